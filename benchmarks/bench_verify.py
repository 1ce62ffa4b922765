"""Verification throughput: 1,000 answers (solution + tests each) through `evol.verify`.

One run, side by side, same items, same sandbox workers: (a) the round's verifier
(`Verifier.check`: parse the answer, split solution and tests, run them in the harness that
reports per-test results), and (b) the sandbox's plain `python` job on the same code with the
asserts appended (pass = ran to the end), the cheapest possible check. The ratio is the
harness' overhead; the target is (a) finishing 1,000 items in <= 60 s with 2 workers.
With `--mutants K`, (c) the same items with `tests+mutants` (1 + K sandbox jobs per item).

    python benchmarks/bench_verify.py [--items 1000] [--workers 2] [--mutants 0]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from evolcoder.eval.sandbox import Limits, Sandbox
from evolcoder.evolution.checks import split_answer
from evolcoder.evolution.plan import Verification
from evolcoder.evolution.verify import Verifier


def answers(n: int) -> list[str]:
    """Distinct right answers with their own asserts, a few of them failing, like a real round."""
    out = []
    for i in range(n):
        wrong = i % 10 == 0
        out.append(f"Solution {i}:\n\n```python\ndef f_{i}(xs):\n    total = 0\n    for x in xs:\n"
                   f"        if x > {i % 7}:\n            total += x * {1 + i % 5}\n    return total\n\n"
                   f"assert f_{i}([]) == 0\nassert f_{i}([{i % 7 + 1}]) == {(i % 7 + 1) * (1 + i % 5) + wrong}\n"
                   f"assert f_{i}([0, {i % 7}]) == 0\n```\n")
    return out


def settings(mode: str, mutants: int) -> Verification:
    return Verification(mode=mode, eliminate=True, attempts=0, mutants=max(1, mutants), timeout_s=5.0,
                        memory_mb=512, tests_template="{instruction}")


def timed_verifier(items: list[str], workers: int, mode: str, mutants: int) -> tuple[float, dict[str, int]]:
    verifier = Verifier.start(settings(mode, mutants), workers)
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(2 * workers) as pool:
            verdicts = list(pool.map(lambda a: verifier.check(a, (), 0), items))
        wall = time.perf_counter() - start
    finally:
        verifier.close()
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.status] = counts.get(v.status, 0) + 1
    return wall, counts


def timed_plain(items: list[str], workers: int) -> tuple[float, int]:
    jobs = []
    for answer in items:
        split = split_answer(answer)
        code = split.solution + "\n" + "\n".join(t.source for t in split.tests)
        jobs.append({"kind": "python", "code": code, "timeout": 5.0})
    with Sandbox(workers, Limits(timeout_s=5.0, memory_mb=512)) as box:
        start = time.perf_counter()
        results = box.map(jobs)
        wall = time.perf_counter() - start
    return wall, sum(r.passed for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mutants", type=int, default=0, help="also time tests+mutants with K mutants")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: CI checks the bench still runs")
    args = parser.parse_args()
    if args.smoke:
        args.items, args.mutants = 8, 1
    items = answers(args.items)
    plain, plain_passed = timed_plain(items, args.workers)
    wall, counts = timed_verifier(items, args.workers, "tests", 0)
    print(f"{args.items} items, {args.workers} sandbox workers")
    print(f"  plain sandbox job  : {plain:6.2f} s  {args.items / plain:7.1f} items/s  ({plain_passed} passed)")
    print(f"  evol.verify=tests  : {wall:6.2f} s  {args.items / wall:7.1f} items/s  {counts}")
    print(f"  verifier / plain   : {wall / plain:.2f}x the time; target <= 60 s: "
          f"{'met' if wall <= 60 else 'MISSED'} ({wall / 60:.0%} of it)")
    if args.mutants:
        mwall, mcounts = timed_verifier(items, args.workers, "tests+mutants", args.mutants)
        print(f"  tests+mutants (K={args.mutants}): {mwall:6.2f} s  {args.items / mwall:7.1f} items/s  {mcounts}  "
              f"({mwall / wall:.2f}x tests)")


if __name__ == "__main__":
    main()
