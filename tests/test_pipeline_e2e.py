"""The whole recipe under real DVC on a smoke configuration: tiny model, a few seeds, 2 rounds.

Evolution goes over real HTTP to the loopback OpenAI-compatible server; the base model is
a tiny randomly initialised Llama built on the fly; evaluation really generates, executes
in the sandbox and scores a handful of HumanEval and dev problems.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dvcproject import REPO, default_params, make_project, out, ran, sh
from fakeserver import subprocess_server

pytestmark = pytest.mark.slow

ALL_STAGES = {"seed", "plan", "evolver", "round@1", "round@2", "merge", "base_model", "finetune",
              "eval@base", "eval@finetuned", "eval@dev", "report"}


def smoke_params(base_url: str, model_dir: Path, seed: Path) -> dict:
    params = default_params()
    params["seed"].update({"path": str(seed), "n": 4})
    params["evol"]["rounds"] = 2
    params["evolver"].update({"provider": "openai", "model": "fake", "base_url": base_url})
    params["llm"]["concurrency"] = 4
    params["merge"]["decontaminate"] = ["humaneval"]
    params["base_model"]["source"] = str(model_dir)
    params["finetune"].update({"max_steps": 2, "max_length": 128, "per_device_batch_size": 2,
                               "precision": "fp32"})
    params["generate"].update({"max_new_tokens": 12, "batch_size": 4, "dtype": "float32"})
    params["eval"]["limit"] = 3
    params["dev"]["limit"] = 3
    params["sandbox"]["workers"] = 2
    return params


def _report_names_this_training_set(project: Path) -> None:
    """The `report` stage's page names the train.jsonl on disk and links its offline figures."""
    import hashlib

    sha = hashlib.sha256((project / "data/train/train.jsonl").read_bytes()).hexdigest()
    report = (project / "metrics/report.md").read_text()
    assert f"`{sha}`" in report and "](figures/test_similarity.svg)" in report
    assert "<polyline" in (project / "metrics/figures/test_similarity.svg").read_text()


def test_full_pipeline_then_one_more_round(tmp_path: Path, tiny_model_dir: Path) -> None:
    seed = REPO / "src" / "evolcoder" / "resources" / "seed.jsonl"
    with subprocess_server() as base_url:
        project = make_project(tmp_path, smoke_params(base_url, tiny_model_dir, seed))

        first = sh(project, "dvc", "repro")
        assert ran(first) >= ALL_STAGES, out(first)[-3000:]
        for name in ("seed", "merge", "evol", "train", "eval_base", "eval", "dev"):
            assert (project / "metrics" / f"{name}.json").is_file(), name
        tuned = json.loads((project / "metrics/eval.json").read_text())
        assert tuned["humaneval"]["n_tasks"] == 3 and 0.0 <= tuned["humaneval"]["pass@1"] <= 1.0
        dev = json.loads((project / "metrics/dev.json").read_text())
        assert dev["dev"]["n_tasks"] == 3
        train = json.loads((project / "metrics/train.json").read_text())
        assert train
        samples = (project / "data/eval/finetuned/humaneval.samples.jsonl").read_text().splitlines()
        assert len(samples) == 3

        _report_names_this_training_set(project)

        assert ran(sh(project, "dvc", "repro")) == set()  # nothing changed: nothing runs
        assert "up to date" in out(sh(project, "dvc", "status"))
        sh(project, "git", "add", "-A")
        sh(project, "git", "commit", "-qm", "two rounds")

        three = ran(sh(project, "dvc", "exp", "run", "-S", "evol.rounds=3"))
        assert {"plan", "round@3", "merge", "finetune", "eval@finetuned", "eval@dev"} <= three
        assert not three & {"seed", "evolver", "round@1", "round@2", "base_model", "eval@base"}
        _report_names_this_training_set(project)  # the report stage reran: the new train.jsonl
        diff = out(sh(project, "dvc", "metrics", "diff", "--json"))
        assert "metrics/evol.json" in diff

        reworded = ran(sh(project, "dvc", "exp", "run", "-S",
                          "+evol.heuristics.constraints=Add two new constraints to the problem."))
        assert {"plan", "round@1", "round@2", "merge", "finetune", "eval@finetuned", "eval@dev"} <= reworded
        assert not reworded & {"seed", "evolver", "base_model", "eval@base"}

    report = subprocess.run([sys.executable, "-m", "evolcoder.cli", "report", "--no-html"], cwd=project,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    text = (project / "metrics/report.md").read_text()
    assert "| r3 |" in text and "humaneval" in text
