"""Eval generation survives `kill -9` and never pays twice for an endpoint's completions.

The stage script runs as DVC runs it, a real subprocess: once with a tiny on-the-fly model
that is SIGKILLed mid-benchmark and re-run (the journal holds what was finished, the re-run
generates only the rest, the samples equal an uninterrupted run's byte for byte), and once
twice against the loopback fake server (the second run is answered from the completion
cache: the server receives no request at all).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fakeserver import Fault, FakeServer

from evolcoder.eval.problems import load_benchmark
from evolcoder.llm.cache import CompletionCache
from evolcoder.report import build_report

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "stages" / "eval.py"
TASKS = 12


def _project(root: Path, **generate: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    params = {"generate": {"max_new_tokens": 40, "batch_size": 1, "dtype": "float32", "mode": "completion",
                           "base_mode": "completion", "early_stop": False, **generate},
              "eval": {"benchmarks": ["humaneval"], "limit": TASKS, "ks": [1], "timeout_s": 5.0},
              "sandbox": {"workers": 2}, "llm": {"backoff_s": 0.01}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _command(model: str) -> list[str]:
    return [sys.executable, str(STAGE), "--params", "params.yaml", "--section", "eval", "--model", model,
            "--out-dir", "data/eval", "--metrics", "metrics/eval.json"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EVOLCODER_CACHE"}
    return {**env, "PYTHONPATH": str(REPO / "src")}


def _run(root: Path, model: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(model), cwd=root, env=_env(), capture_output=True, text=True, timeout=600)


def _journaled(root: Path) -> list[dict]:
    """The journal's complete lines (a line torn by the kill is not a finished sample)."""
    records = []
    for path in (root / ".evolcoder" / "journal").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def _kill_once_journaled(root: Path, model: str, at_least: int) -> list[dict]:
    """Start the stage, SIGKILL it as soon as `at_least` samples are journaled."""
    proc = subprocess.Popen(_command(model), cwd=root, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while len(_journaled(root)) < at_least:
            if proc.poll() is not None:
                pytest.fail(f"the stage ended (rc {proc.returncode}) before it could be killed: "
                            f"{proc.communicate()[1][-2000:]}")
            assert time.monotonic() < deadline, "nothing journaled within 300 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return _journaled(root)


def test_sigkill_mid_benchmark_resumes_without_regenerating(tmp_path: Path, tiny_model_dir: Path) -> None:
    killed = _project(tmp_path / "killed")
    journaled = _kill_once_journaled(killed, str(tiny_model_dir), at_least=3)
    done = {r["task_id"] for r in journaled}
    assert 3 <= len(done) < TASKS, f"killed after {len(done)} of {TASKS} tasks: not mid-benchmark"
    assert not (killed / "data" / "eval").exists() and not (killed / "metrics").exists(), "no partial output"

    proc = _run(killed, str(tiny_model_dir))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((killed / "metrics" / "eval.json").read_text())["provenance"]["runs"]["humaneval"]
    assert run["resumed_samples"] == len(done) and run["generated_samples"] == TASKS - len(done)
    assert f"generate: {len(done)} of {TASKS} samples resumed" in proc.stderr
    assert not _journaled(killed), "the journal goes once the outputs are complete"

    whole = _project(tmp_path / "whole")
    proc = _run(whole, str(tiny_model_dir))
    assert proc.returncode == 0, proc.stderr
    resumed = (killed / "data" / "eval" / "humaneval.samples.jsonl").read_bytes()
    assert resumed == (whole / "data" / "eval" / "humaneval.samples.jsonl").read_bytes()
    samples = [json.loads(line) for line in resumed.decode().splitlines()]
    by_task = {s["task_id"]: s for s in samples}
    assert len(by_task) == TASKS and all(by_task[r["task_id"]]["raw"] == r["text"] for r in journaled)
    _assert_verdict_provenance(json.loads((whole / "metrics" / "eval.json").read_text())["provenance"])
    report = build_report(whole / "metrics")
    assert "- fine-tuned: prompt `completion`, hf float32, batch 1; evolcoder " in report
    assert "time limit floor eval.timeout_s = 5.0 s" in report


def _assert_verdict_provenance(prov: dict) -> None:
    """What decides a verdict is in the metrics: prompt, backend, dtype, batch, versions, time limits."""
    assert prov["prompt_style"] == "completion" and prov["backend"] == "hf"
    assert prov["dtype"] == "float32" and prov["batch_size"] == 1
    assert set(prov["versions"]) >= {"torch", "transformers", "evolcoder"}
    assert prov["time_limit"]["timeout_s"] == 5.0 and "eval.timeout_s" in prov["time_limit"]["policy"]


@functools.cache
def _humaneval() -> dict:
    return {p.prompt: p for p in load_benchmark("humaneval").problems}


def _canonical(messages: list[dict]) -> str:
    problem = _humaneval()[messages[-1]["content"]]
    return problem.canonical_solution + "\n\ndef check_it():\n    pass\n"  # cut at the \ndef stop


def test_endpoint_rerun_makes_zero_requests(tmp_path: Path) -> None:
    root = tmp_path / "project"
    with FakeServer(responder=_canonical) as server:
        _project(root, backend="openai", base_url=server.base_url, api_model="served", max_new_tokens=256,
                 batch_size=16)
        server.push(Fault.error(503))  # retried by the client, counted in the metrics
        first = _run(root, "served")
        assert first.returncode == 0, first.stderr
        assert server.count("/v1/completions") == TASKS + 1
        assert server.count("/v1/chat/completions") == 0
        metrics = json.loads((root / "metrics" / "eval.json").read_text())
        assert metrics["humaneval"]["pass@1"] == 1.0
        llm = metrics["provenance"]["runs"]["humaneval"]["llm"]
        assert llm["requests"] == TASKS and llm["retries_by_cause"] == {"server_error": 1}
        samples = (root / "data" / "eval" / "humaneval.samples.jsonl").read_bytes()

        second = _run(root, "served")
        assert second.returncode == 0, second.stderr
        assert server.count("/v1/completions") == TASKS + 1, "the re-run sent requests"
    again = json.loads((root / "metrics" / "eval.json").read_text())
    assert again["provenance"]["runs"]["humaneval"]["llm"]["cache_hits"] == TASKS
    assert again["provenance"]["runs"]["humaneval"]["llm"]["requests"] == 0
    assert again["provenance"]["backend"] == "openai" and again["provenance"]["concurrency"] == 8
    assert (root / "data" / "eval" / "humaneval.samples.jsonl").read_bytes() == samples
    with CompletionCache(root / ".evolcoder" / "cache.sqlite") as cache:
        (row,) = cache.stats("eval")
    assert row["provider"] == "openai-completions" and row["model"] == "served"
    assert row["requests"] == TASKS and row["cache_hits"] == TASKS and row["runs"] == 2
