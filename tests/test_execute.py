"""`evaluate_samples`, pass@k and `evolcoder execute`, on the real benchmarks and sandbox."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.eval.execute import (bootstrap_mean, errata, evaluate_samples, intervals, missing_toolchain, pass_at_k,
                                    read_samples, task_timeout, wilson)
from evolcoder.errors import DataError
from evolcoder.eval.problems import load_benchmark

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not DATA.is_dir(), reason=f"public datasets not found at {DATA}")]
WRONG = "    raise NotImplementedError\n"


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("EVOLCODER_DATA_DIR", str(DATA))
    monkeypatch.setenv("EVOLCODER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def canonical(bench, ids=None):
    return [{"task_id": p.task_id, "completion": p.canonical_solution}
            for p in bench.problems if ids is None or p.task_id in ids]


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (10, 3, 5), (20, 0, 10), (200, 17, 100),
                                   (7, 7, 3)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 5)


@pytest.mark.parametrize("name", ["humaneval", "mbpp-full", "mbpp-sanitized", "dev"])
def test_canonical_solutions_pass_and_wrong_ones_fail(name):
    bench = load_benchmark(name)
    good = canonical(bench)
    wrong = [{"task_id": p.task_id, "solution": p.prompt + "\ndef " + p.entry_point + "(*a, **k):\n" + WRONG}
             for p in bench.problems]
    report = evaluate_samples(bench, good + wrong, workers=2)
    failed = [(r["task_id"], r["result"]) for r in report.results[:len(good)] if not r["passed"]]
    assert failed == []  # no dataset errata found in these sets
    assert not any(r["passed"] for r in report.results[len(good):])
    assert report.per_task[bench.problems[0].task_id] == {"n": 2, "correct": 1, "pass@1": 0.5}
    assert report.to_metrics()["benchmark"] == bench.provenance()


# EvalPlus tasks chosen for their comparison rules: float atol, find_zero's oracle,
# set equality, Counter results, complex inputs, "not None" oracles and the other
# special-cased MBPP+ tasks.
PLUS_SUBSET = {
    "humaneval+": ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/32", "HumanEval/53"],
    "mbpp+": ["Mbpp/2", "Mbpp/88", "Mbpp/124", "Mbpp/558", "Mbpp/581", "Mbpp/737",
              "Mbpp/787", "Mbpp/794"],
}


@pytest.mark.parametrize("name", sorted(PLUS_SUBSET))
def test_plus_canonical_passes_and_wrong_fails_on_special_oracles(name):
    bench = load_benchmark(name)
    ids = PLUS_SUBSET[name]
    wrong = [{"task_id": i, "completion": f"\ndef {bench.by_id[i].entry_point}(*args):\n    return 12345\n"}
             for i in ids]
    report = evaluate_samples(bench, canonical(bench, ids) + wrong, workers=2)
    assert [r["result"] for r in report.results[:len(ids)]] == ["passed"] * len(ids)
    assert not any(r["passed"] for r in report.results[len(ids):])


def test_plus_catches_a_solution_that_only_passes_the_base_tests():
    off_by_one = "\n    s = sorted(numbers)\n    return any(s[i + 1] - s[i] <= threshold for i in range(len(s) - 1))\n"
    sample = [{"task_id": "HumanEval/0", "completion": off_by_one}]
    base = evaluate_samples(load_benchmark("humaneval"), sample, workers=1)
    plus = evaluate_samples(load_benchmark("humaneval+"), sample, workers=1)
    assert base.results[0]["passed"]
    assert plus.results[0]["result"].startswith("failed: wrong output on input")


# HumanEval/0 (has_close_elements): a sample that counts its calls can act differently on
# the base inputs (the first n_base) and on the plus inputs.
COUNTING = """
calls = 0
def has_close_elements(numbers, threshold):
    global calls
    calls += 1
    if calls > {after}:
        {then}
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
"""


def _counting(after: int, then: str) -> dict:
    return {"task_id": "HumanEval/0", "solution": COUNTING.format(after=after, then=then)}


def test_plus_stops_at_the_first_wrong_output():
    """Wrong on input 0, then a hang: only stopping at the first wrong output avoids the timeout."""
    bench = load_benchmark("humaneval+")
    report = evaluate_samples(bench, [{"task_id": "HumanEval/0", "solution": COUNTING.format(
        after=1, then="import time; time.sleep(60)").replace("return any", "return None and any")}],
        workers=1, timeout=2.0)
    (row,) = report.results
    assert row["result"] == "failed: wrong output on input 0"
    assert row["duration_s"] < 2.0 and not row["base_passed"]


def test_base_verdict_survives_a_plus_failure_timeout_or_exit():
    bench = load_benchmark("humaneval+")
    n_base = bench.by_id["HumanEval/0"].n_base
    samples = [_counting(n_base, "return 'wrong'"), _counting(n_base, "while True: pass"),
               _counting(n_base, "import os; os._exit(0)"), _counting(n_base - 1, "return 'wrong'"),
               canonical(bench, {"HumanEval/0"})[0]]
    report = evaluate_samples(bench, samples, workers=2, timeout=2.0, ks=(1,))
    wrong, hang, exits, base_wrong, good = report.results
    assert wrong["result"] == f"failed: wrong output on input {n_base}" and wrong["base_passed"]
    assert hang["result"] == "timed out" and hang["base_passed"]
    assert hang["result"] == "timed out" and exits["result"].startswith("failed: exited") and exits["base_passed"]
    assert base_wrong["result"] == f"failed: wrong output on input {n_base - 1}" and not base_wrong["base_passed"]
    assert good["passed"] and good["base_passed"]
    assert report.pass_at_k["pass@1"] == pytest.approx(1 / 5)
    assert report.base()["pass@1"] == pytest.approx(4 / 5)
    assert report.base()["ci95"]["pass@1"] == [0.8, 0.8]  # one task: resampling tasks cannot vary it


def test_intervals_wilson_for_one_sample_and_seeded_bootstrap_otherwise():
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)  # the textbook Wilson 95 % interval
    assert wilson(0, 20)[0] == 0.0 and 0.1 < wilson(0, 20)[1] < 0.2
    values = [0.0, 0.25, 0.5, 1.0, 1.0, 0.75, 0.0, 0.5]
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    low, high = bootstrap_mean(values)
    assert low < sum(values) / len(values) < high and 0.0 <= low and high <= 1.0
    one = {f"t{i}": {"n": 1, "correct": i % 2, "pass@1": float(i % 2)} for i in range(10)}
    assert intervals(one, {"pass@1": 0.5}) == {"pass@1": [round(v, 6) for v in wilson(5, 10)]}
    two = {f"t{i}": {"n": 2, "correct": c, "pass@1": c / 2} for i, c in enumerate([0, 1, 2, 2, 1, 0])}
    lo, hi = intervals(two, {"pass@1": 0.5})["pass@1"]
    assert lo < 0.5 < hi


def test_errata_name_the_excluded_inputs_and_tasks():
    bench = load_benchmark("mbpp+")
    refs = {"Mbpp/255": {"outputs": [{"ok": 1}, {"error": "MemoryError"}], "errata": [1], "status": "passed"},
            "Mbpp/2": {"status": "timed out"}, "Mbpp/3": {"outputs": [{"ok": 1}], "errata": []}}
    found = errata(bench, refs, {"Mbpp/2", "Mbpp/3", "Mbpp/255"})
    assert found == [
        {"task_id": "Mbpp/2", "excluded": "task",
         "why": "canonical solution failed here (timed out); every sample counts as failed"},
        {"task_id": "Mbpp/255", "excluded": "inputs", "inputs": [1],
         "why": "canonical solution fails on them here (MemoryError); not judged"}]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name,errata", [("humaneval+", []), ("mbpp+", [])])
def test_all_plus_canonical_solutions_pass(name, errata):
    """Full EvalPlus run (minutes). Mbpp/255 input 88 needs > 2 GiB for its expected output
    (1.6M tuples); that input is excluded as an erratum and the task still passes."""
    bench = load_benchmark(name)
    report = evaluate_samples(bench, canonical(bench), workers=os.cpu_count())
    assert [r["task_id"] for r in report.results if not r["passed"]] == errata


LANG_SAMPLES = {
    "cpp": ("    return string.size();\n", "    return 7;\n"),
    "java": ("        return string.length();\n", "        return 7l;\n"),
    "js": ("  return string.length;\n}\n", "  return 7;\n}\n"),
    "rs": ("    string.len() as isize\n", "    7\n"),
    "go": ("    return len(myString)\n}\n", "    return 7\n}\n"),
    "sh": ("    echo -n \"$1\" | wc -c | tr -d ' '\n", "    echo 7\n"),
}


@pytest.mark.parametrize("lang", sorted(LANG_SAMPLES))
def test_multipl_e_runs_each_language(lang):
    if tool := missing_toolchain(lang):
        pytest.skip(f"{tool} not installed (CI installs it in .ci/run)")
    bench = load_benchmark(f"multipl-e-{lang}")
    task = next(p.task_id for p in bench.problems if p.task_id.startswith("HumanEval_23_"))
    good, bad = LANG_SAMPLES[lang]
    report = evaluate_samples(bench, [{"task_id": task, "completion": good}, {"task_id": task, "completion": bad}],
                              workers=2)
    assert [r["passed"] for r in report.results] == [True, False], report.results


def test_results_keep_input_order_and_partial_coverage_is_fine():
    bench = load_benchmark("humaneval")
    p0, p1 = bench.problems[0], bench.problems[1]
    samples = [{"task_id": p1.task_id, "completion": WRONG}, {"task_id": p0.task_id, "completion": p0.canonical_solution},
               {"task_id": p1.task_id, "completion": p1.canonical_solution}, {"task_id": p0.task_id, "completion": WRONG},
               {"task_id": p0.task_id, "completion": p0.canonical_solution}]
    report = evaluate_samples(bench, samples, workers=2, ks=(1, 2, 3))
    assert [(r["task_id"], r["completion_id"], r["passed"]) for r in report.results] == [
        (p1.task_id, 0, False), (p0.task_id, 0, True), (p1.task_id, 1, True), (p0.task_id, 1, False),
        (p0.task_id, 2, True)]
    assert set(report.pass_at_k) == {"pass@1", "pass@2"}  # task 1 has only 2 samples
    assert report.per_task[p0.task_id]["pass@3"] == 1.0
    assert report.pass_at_k["pass@1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    metrics = report.to_metrics()
    assert metrics["tasks_covered"] == 2 and metrics["tasks_total"] == 164


def test_time_limit_scales_with_the_canonical_runtime_and_has_a_floor():
    problem = load_benchmark("humaneval").problems[0]
    assert task_timeout(problem, {"status": "passed", "time_s": 0.01}, 3.0) == 3.0
    assert task_timeout(problem, {"status": "passed", "time_s": 2.0}, 3.0) == 8.0
    bench = load_benchmark("humaneval")
    slow = "    import time\n    time.sleep(30)\n"
    report = evaluate_samples(bench, [{"task_id": problem.task_id, "completion": slow}], workers=1, timeout=1.0)
    assert report.results[0]["result"] == "timed out" and report.results[0]["timeout_s"] == 1.0


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("line,message", [
    (b'{"task_id": "HumanEval/0", "completion": ', "invalid JSON"),
    (b'{"task_id": "HumanEval/0", "completion": "\xff\xfe"}', "not valid UTF-8"),
    (b'{"task_id": "HumanEval/999", "completion": "x"}', "unknown task_id 'HumanEval/999'"),
    (b'{"task_id": "HumanEval/0"}', "needs a completion"),
    (b'{"completion": "x"}', "missing or non-string task_id"),
    (b'["HumanEval/0", "x"]', "expected a JSON object"),
    (b'{"task_id": "HumanEval/0", "completion": 3}', "completion must be a string"),
])
def test_bad_sample_lines_name_the_file_and_line(tmp_path, line, message):
    good = b'{"task_id": "HumanEval/0", "completion": "    return True\\n"}'
    path = write_lines(tmp_path / "s.jsonl", [good, line])
    with pytest.raises(DataError, match=f"s.jsonl:2: .*{message}"):
        read_samples(path, load_benchmark("humaneval"))


def test_empty_completions_are_counted_as_failures_with_a_warning(tmp_path):
    bench = load_benchmark("humaneval")
    path = write_lines(tmp_path / "s.jsonl", [b'{"task_id": "HumanEval/0", "completion": "  "}'])
    samples = read_samples(path, bench)
    report = evaluate_samples(bench, samples, workers=1)
    assert report.results[0]["result"] == "failed: empty completion"
    assert any("s.jsonl:1" in w and "empty completion" in w for w in report.warnings)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolcoder.cli", "execute", *args], capture_output=True,
                          text=True, timeout=240, env=os.environ.copy())


def test_cli_writes_results_and_metrics(tmp_path):
    bench = load_benchmark("humaneval")
    lines = []
    for p in bench.problems[:3]:
        lines += [json.dumps({"task_id": p.task_id, "completion": p.canonical_solution}).encode(),
                  json.dumps({"task_id": p.task_id, "completion": WRONG}).encode()]
    samples = write_lines(tmp_path / "samples.jsonl", lines)
    out = tmp_path / "results.jsonl"
    proc = cli("--benchmark", "humaneval", "--samples", str(samples), "--out", str(out), "-k", "1,2,10",
               "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "pass@1: 0.5000" in proc.stdout and "pass@2: 1.0000" in proc.stdout and "pass@10" not in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False] * 3
    assert rows[1]["result"].startswith("failed: NotImplementedError")
    metrics = json.loads((tmp_path / "results.jsonl.metrics.json").read_text())
    assert metrics["pass@1"] == 0.5 and metrics["benchmark"]["sha256"] == bench.sha256
    assert metrics["tasks_covered"] == 3 and "pass@10" not in metrics


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path):
    samples = write_lines(tmp_path / "samples.jsonl", [b'{"task_id": "HumanEval/0", "completion": "x"}',
                                                       b'{"task_id": "Nope/1", "completion": "x"}'])
    out = tmp_path / "results.jsonl"
    proc = cli("--benchmark", "humaneval", "--samples", str(samples), "--out", str(out))
    assert proc.returncode == 2
    assert f"{samples}:2: unknown task_id 'Nope/1'" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [samples]
    proc = cli("--benchmark", "nope", "--samples", str(samples), "--out", str(out))
    assert proc.returncode == 2 and "unknown benchmark 'nope'" in proc.stderr
