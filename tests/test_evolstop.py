"""Evol-stop: choosing the round count from `dvc exp show --json`.

One fabricated document pins down the rules (best dev, ties -> fewer rounds, test score
never used, failed/queued experiments skipped); a real tiny DVC sweep in a temporary git
repository checks that the real document is read the same way and `--apply` works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from evolcoder.experiments import evolstop
from evolcoder.cli import main


def _node(rev: str, name: str | None, rounds: int | None, dev: float | None, test: float | None,
          ts: str = "2026-01-01T00:00:00") -> dict:
    metrics = {}
    if dev is not None:
        metrics["metrics/dev.json"] = {"data": {"dev": {"pass@1": dev, "n_tasks": 20}}}
    if test is not None:
        metrics["metrics/eval.json"] = {"data": {"humaneval": {"pass@1": test, "n_tasks": 164}}}
    params = {"params.yaml": {"data": {"evol": {"rounds": rounds, "seed": 1234}, "generate": {"n": 1}}}}
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "timestamp": ts, "params": params if rounds is not None else {},
                     "metrics": metrics, "deps": {}, "outs": {}, "meta": {"has_checkpoints": False}}}


def fabricated() -> list:
    """The shape DVC 3 prints: workspace, the baseline commit, its experiments."""
    experiments = [
        _node("a1" * 20, "exp-one", 1, 0.30, 0.50),
        _node("a2" * 20, "exp-two", 2, 0.40, 0.20),   # best dev (test is worse: must not matter)
        _node("a3" * 20, "exp-three", 3, 0.35, 0.90),
        _node("a4" * 20, "exp-four", 4, 0.40, 0.10),  # ties with 2 rounds -> 2 wins
        _node("a5" * 20, "exp-queued", 5, None, None),  # queued: no metrics yet
    ]
    baseline = _node("b" * 40, "main", 3, 0.99, 0.99, ts="2025-01-01T00:00:00")  # rounds=3 dup: exp wins
    baseline["experiments"] = [{"revs": [e], "executor": None, "name": e["name"]} for e in experiments]
    workspace = _node("workspace", None, 6, 1.0, 1.0)  # never chosen: uncommitted
    return [workspace, baseline]


def test_choose_on_fabricated_document() -> None:
    rows = evolstop.parse_exp_show(fabricated())
    pool = evolstop.candidates(rows)
    assert [r.rounds for r in pool] == [1, 2, 3, 4]
    assert [r.name for r in pool] == ["exp-one", "exp-two", "exp-three", "exp-four"]
    best = evolstop.choose(rows)
    assert (best.rounds, best.name, best.dev) == (2, "exp-two", 0.40)
    assert evolstop.plot_records(pool)[1] == {"rounds": 2, "dev_pass@1": 0.40, "test_pass@1": 0.20,
                                              "experiment": "exp-two"}


def test_cli_on_fabricated_document(tmp_path: Path) -> None:
    doc = tmp_path / "exp.json"
    doc.write_text(json.dumps(fabricated()))
    plot = tmp_path / "plot.json"
    result = CliRunner().invoke(main, ["evol-stop", "--exp-json", str(doc), "--plot-out", str(plot)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["rounds", "dev", "pass@1", "test", "pass@1", "experiment"]
    assert lines[2].split() == ["2", "0.4000", "0.2000", "exp-two", "<-", "best"]
    assert "best: evol.rounds=2 (dev pass@1 0.4000, exp-two)" in result.output
    assert [r["rounds"] for r in json.loads(plot.read_text())] == [1, 2, 3, 4]


def test_explicit_metric_key_and_no_results(tmp_path: Path) -> None:
    rows = evolstop.parse_exp_show(fabricated(), dev=evolstop.MetricRef.parse("metrics/eval.json:humaneval.pass@1"))
    assert evolstop.choose(rows).rounds == 3  # choosing on the key given (here: test, for the check)
    doc = tmp_path / "exp.json"
    doc.write_text(json.dumps(fabricated()))
    result = CliRunner().invoke(main, ["evol-stop", "--exp-json", str(doc), "--dev-metric", "metrics/nope.json",
                                       "--plot-out", ""])
    assert result.exit_code == 2
    assert "no experiment has both evol.rounds and a dev pass@1" in result.output


def _with_tasks(node: dict, scores: list[float]) -> dict:
    dev = node["data"]["metrics"]["metrics/dev.json"]["data"]["dev"]
    dev.update({"pass@1": sum(scores) / len(scores), "task_ids": [f"EvolDev/{i}" for i in range(len(scores))],
                "per_task_pass@1": scores})
    return node


def _sweep(per_rounds: dict[int, list[float]]) -> list:
    exps = [_with_tasks(_node(f"{r:02d}" * 20, f"exp-{r}", r, 0.0, 0.5), scores)
            for r, scores in per_rounds.items()]
    baseline = _node("b" * 40, "main", None, None, None)
    baseline["experiments"] = [{"revs": [e], "executor": None, "name": e["name"]} for e in exps]
    return [baseline]


def test_one_problem_apart_keeps_the_fewer_rounds(tmp_path: Path) -> None:
    """53 dev tasks, 2 rounds solve one more than 1 round: the paired interval includes 0."""
    one = [1.0] * 20 + [0.0] * 33
    two = [1.0] * 21 + [0.0] * 32
    rows = evolstop.parse_exp_show(_sweep({1: one, 2: two}))
    decision = evolstop.decide(rows)
    assert (decision.top.rounds, decision.chosen.rounds) == (2, 1)
    (cmp,) = decision.comparisons
    assert cmp.diff == pytest.approx(1 / 53) and cmp.low <= 0.0 <= cmp.high and cmp.n_tasks == 53
    doc = tmp_path / "exp.json"
    doc.write_text(json.dumps(_sweep({1: one, 2: two})))
    plot = tmp_path / "plot.json"
    result = CliRunner().invoke(main, ["evol-stop", "--exp-json", str(doc), "--plot-out", str(plot)])
    assert result.exit_code == 0, result.output
    assert "dev pass@1, 2 rounds minus 1: +0.0189 [" in result.output
    assert "includes 0, so the fewer rounds are kept" in result.output
    assert "best: evol.rounds=1" in result.output
    records = json.loads(plot.read_text())
    assert [r["chosen"] for r in records] == [True, False] and records[0]["ci95"][0] <= 0 <= records[0]["ci95"][1]


def test_a_clear_paired_gain_keeps_the_best() -> None:
    base = [1.0] * 10 + [0.0] * 43
    better = [1.0] * 30 + [0.0] * 23  # solves everything 1 round solves, and 20 more
    rows = evolstop.parse_exp_show(_sweep({1: base, 2: better, 3: better[:-1] + [0.0]}))
    decision = evolstop.decide(rows)
    assert decision.chosen.rounds == 2
    assert [c.other.rounds for c in decision.comparisons] == [1] and decision.comparisons[0].low > 0


def test_bad_document_names_file(tmp_path: Path) -> None:
    doc = tmp_path / "exp.json"
    doc.write_text('[{"rev": "workspace",\n oops')
    result = CliRunner().invoke(main, ["evol-stop", "--exp-json", str(doc)])
    assert result.exit_code == 2
    assert f"{doc}:2: invalid JSON" in result.output


# ---------------------------------------------------------------------------------------
# A real sweep: a tiny DVC project whose stage writes metrics/dev.json from evol.rounds.

SCORE = """\
import json, sys, yaml
rounds = yaml.safe_load(open("params.yaml"))["evol"]["rounds"]
dev = {1: 0.2, 2: 0.5, 3: 0.4}[rounds]  # peaks at 2 rounds, like the paper's curve
with open("metrics/dev.json", "w") as f:
    json.dump({"dev": {"pass@1": dev}}, f)
with open("metrics/eval.json", "w") as f:
    json.dump({"humaneval": {"pass@1": dev / 2 + 0.3 * (rounds == 3)}}, f)
"""

DVC_YAML = """\
stages:
  score:
    cmd: {python} score.py
    deps: [score.py]
    params: [evol.rounds]
    metrics:
      - metrics/dev.json:
          cache: false
      - metrics/eval.json:
          cache: false
"""


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_real_dvc_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    _run(["git", "init", "-q", "-b", "main"], repo)
    _run(["git", "config", "user.email", "t@example.com"], repo)
    _run(["git", "config", "user.name", "t"], repo)
    _run(["dvc", "init", "-q"], repo)
    _run(["dvc", "config", "core.analytics", "false"], repo)
    (repo / "score.py").write_text(SCORE)
    (repo / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable))
    (repo / "params.yaml").write_text("evol:\n  rounds: 1\n")
    (repo / "metrics").mkdir()
    _run(["dvc", "repro", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-q", "-m", "baseline"], repo)
    _run(["dvc", "exp", "run", "--queue", "-S", "evol.rounds=range(1,4)"], repo)
    _run(["dvc", "exp", "run", "--run-all", "-j", "1"], repo)

    doc = json.loads(_run(["dvc", "exp", "show", "--json"], repo))
    rows = evolstop.parse_exp_show(doc)
    pool = evolstop.candidates(rows)
    assert [r.rounds for r in pool] == [1, 2, 3]
    assert [r.kind for r in pool] == ["experiment"] * 3
    assert [r.dev for r in pool] == [0.2, 0.5, 0.4]
    assert [r.test for r in pool] == pytest.approx([0.1, 0.25, 0.5])

    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["evol-stop", "--apply"])
    assert result.exit_code == 0, result.output
    assert "best: evol.rounds=2" in result.output
    assert "applied" in result.output
    assert "rounds: 2" in (repo / "params.yaml").read_text()
    assert json.loads((repo / "metrics" / "dev.json").read_text()) == {"dev": {"pass@1": 0.5}}
    plot = json.loads((repo / "metrics" / "evol_stop.json").read_text())
    assert [(r["rounds"], r["dev_pass@1"]) for r in plot] == [(1, 0.2), (2, 0.5), (3, 0.4)]


def test_report_shows_intervals_errata_and_the_evolstop_choice(tmp_path: Path) -> None:
    from evolcoder.report import build_report

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    entry = {"pass@1": 0.5, "ci95": {"pass@1": [0.25, 0.75]}, "n_tasks": 2,
             "errata": [{"task_id": "Mbpp/255", "excluded": "inputs", "inputs": [88],
                         "why": "canonical solution fails on them here (MemoryError); not judged"}]}
    (metrics / "eval.json").write_text(json.dumps({"mbpp+": entry, "mbpp+/base": {"pass@1": 0.75,
                                                   "ci95": {"pass@1": [0.5, 1.0]}}}))
    one = [1.0] * 20 + [0.0] * 33
    rows = evolstop.parse_exp_show(_sweep({1: one, 2: one[:20] + [1.0] + one[21:]}))
    decision = evolstop.decide(rows)
    (metrics / "evol_stop.json").write_text(json.dumps(evolstop.plot_records(evolstop.candidates(rows), decision)))
    text = build_report(metrics)
    assert "| mbpp+ | pass@1 |  | 0.5000 [0.2500, 0.7500] |  |" in text
    assert "| mbpp+/base | pass@1 |  | 0.7500 [0.5000, 1.0000] |  |" in text
    assert "- mbpp+ Mbpp/255: inputs [88] not judged: canonical solution fails on them here (MemoryError)" in text
    assert "Chosen: **1 rounds** (2 rounds score best, but the 95 % interval" in text
