"""Test-set similarity by round at scale: N records against HumanEval + MBPP (issue 23: < 1 min at 100k).

Records are Code Alpaca 2k instructions with random extra words (so every one is distinct),
split into a seed and two rounds; the merge stage's `test_similarity` is timed end to end
(IDF pass, then the chunked sparse search), wall and CPU, with the load average.

    EVOLCODER_DATA_DIR=../shared/data python benchmarks/bench_similarity.py [--records 100000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from evolcoder.dataset.similarity import test_similarity
from evolcoder.eval.problems import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 records, HumanEval only")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
    hosts = json.loads((data_dir / "codealpaca" / "code_alpaca_2k.json").read_text(encoding="utf-8"))
    n = 2000 if args.smoke else args.records
    rng = random.Random(0)
    records = [{"id": str(i), "instruction": f"{hosts[i % len(hosts)]['instruction']} v{rng.randrange(10**6)}",
                "input": hosts[i % len(hosts)].get("input", "")} for i in range(n)]
    names = ["humaneval"] if args.smoke else ["humaneval", "mbpp"]
    benchmarks = [load_benchmark(name, str(data_dir)) for name in names]
    cut = [0, n // 10, n // 2, n]
    rounds = {r: records[cut[r]:cut[r + 1]] for r in range(3)}
    t0, c0 = time.perf_counter(), time.process_time()
    out = test_similarity(rounds, benchmarks)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    problems = sum(len(b.problems) for b in benchmarks)
    print(f"{n} records in 3 rounds x {problems} problems ({', '.join(names)}): {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for key, r in out["rounds"].items():
        print(f"- {key}: {r['records']} records, mean nearest similarity {r['mean']}")
    if any(r["mean"] is None or not 0 < r["mean"] <= 1 for r in out["rounds"].values()):
        raise SystemExit("similarity out of range")


if __name__ == "__main__":
    main()
