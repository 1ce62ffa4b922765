"""The paper's analyses as real `dvc exp run`s against the loopback server: the three arms
(original data, evolved matched by samples, evolved matched by tokens) and the test-set
similarity of rounds 0..3 with its plot."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest
import yaml
from dvcproject import default_params, make_project, set_llm, sh
from fakeserver import subprocess_server
from tinytokenizer import make_tokenizer_dir

from evolcoder.dataset.control import source_tokenizer, token_counter

pytestmark = pytest.mark.slow


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _params(seed: Path, base_url: str, tokenizer: Path) -> dict:
    params = default_params()
    params["seed"].update(path=str(seed), n=0)
    params["evol"].update(rounds=3, verify="off")
    set_llm(params, provider="openai", model="fake", base_url=base_url, concurrency=8)
    params["merge"]["decontaminate"] = ["humaneval"]
    params["base_model"]["source"] = str(tokenizer)
    return params


def test_three_arms_and_test_similarity_by_round(tmp_path: Path) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} times the sum of a "
                                                       f"list, skipping item number {i}.",
                                        "output": f"def f(xs):\n    return {i} * sum(xs[:{i}] + xs[{i + 1}:])"})
                            + "\n" for i in range(8)))
    tokenizer = make_tokenizer_dir(tmp_path / "tokenizer")
    count = token_counter(source_tokenizer(str(tokenizer)))
    with subprocess_server() as base_url:
        project = make_project(tmp_path, _params(seed, base_url, tokenizer))
        sh(project, "dvc", "repro", "merge")
        rows = json.loads((project / "metrics/evol_rounds.json").read_text())
        assert [r["round"] for r in rows] == [0, 1, 2, 3]
        assert all(0.0 < r["test_similarity"] <= 1.0 for r in rows)
        detail = json.loads((project / "metrics/evol.json").read_text())["test_similarity"]
        assert "TF-IDF cosine" in detail["measure"] and detail["benchmarks"] == ["humaneval"]
        he = detail["rounds"]["r2"]["by_benchmark"]["humaneval"]
        assert sum(he["histogram"]["counts"]) == 164 and he["closest"][0]["similarity"] == he["max"]
        plots = json.loads(sh(project, "dvc", "plots", "show", "--json").stdout)
        drawn = plots["data"]["test similarity by round"][0]["content"]["data"]["values"]
        assert [round(p["test_similarity"], 4) for p in drawn] == [r["test_similarity"] for r in rows]
        train_all = _jsonl(project / "data/train/train.jsonl")
        # the report stage's own command (its other deps, training and eval metrics, are the slow
        # half of the pipeline): it names this train.jsonl and draws the similarity figure
        report_cmd = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["report"]["cmd"]
        sh(project, *shlex.split(report_cmd))
        sha = hashlib.sha256((project / "data/train/train.jsonl").read_bytes()).hexdigest()
        assert f"`{sha}`" in (project / "metrics/report.md").read_text()
        assert "<polyline" in (project / "metrics/figures/test_similarity.svg").read_text()
        sh(project, "git", "add", "-A")
        sh(project, "git", "commit", "-qm", "three rounds")

        sh(project, "dvc", "exp", "run", "-n", "original", "-S", "evol.rounds=0", "merge")
        original = _jsonl(project / "data/train/train.jsonl")
        assert original and {r["round"] for r in original} == {0}
        assert original == [r for r in train_all if r["round"] == 0]

        sh(project, "dvc", "exp", "run", "-n", "samples", "-S", "evol.rounds=3", "-S", "merge.match=samples", "merge")
        samples = _jsonl(project / "data/train/train.jsonl")
        control = json.loads((project / "metrics/merge.json").read_text())["control"]
        assert len(samples) == len(original) == control["seed_records"] == control["train_records"]
        assert all(r["round"] >= 1 for r in samples) and control["by"] == "samples"

        sh(project, "dvc", "exp", "run", "-n", "tokens", "-S", "evol.rounds=3", "-S", "merge.match=tokens", "merge")
        tokens = _jsonl(project / "data/train/train.jsonl")
        control = json.loads((project / "metrics/merge.json").read_text())["control"]
        seed_tokens = sum(map(count, original))
        assert control["seed_tokens"] == seed_tokens and control["train_tokens"] == sum(map(count, tokens))
        assert all(r["round"] >= 1 for r in tokens)
        assert 0 <= seed_tokens - control["train_tokens"] < max(count(r) for r in train_all if r["round"] >= 1)
        sh(project, "evolcoder", "report", "--no-html")
        report = (project / "metrics/report.md").read_text()
        assert f"| original (evol.rounds=0) | original | 0 | {len(original)} |" in report
        assert f"| evolved, matched by samples | samples | 3 | {len(samples)} |" in report
        assert f"| evolved, matched by tokens | tokens | 3 | {len(tokens)} | {control['train_tokens']} |" in report
