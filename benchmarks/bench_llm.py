"""LLM client throughput against the loopback server: calls/s vs the ideal, and cached re-runs.

Issue 2, item 10: 1,000 requests at 50 ms server latency through the real client (real
`openai` SDK, real HTTP, real SQLite cache). The ideal rate of a pool of c requests in
flight is c / latency; the target is >= 80 % of it at c = 32, and a fully cached re-run in
<= 5 % of the first run's wall time. At c = 1 the ideal is only 20 calls/s, so that point
uses fewer requests (--n1, default 200, about 10 s) and says so. Each point runs
`--repeat` times (default 3, each with fresh requests and a fresh cache) and the summary
gives the median and the range, because one 2-second run on a shared machine is noisy.

The server runs as a separate process so the benchmark measures the client, not the two
sharing one interpreter. With `--evolve` the same is also measured through the round
runner (`evolcoder.evolution.rounds.RoundRunner`: two calls per item).

    python benchmarks/bench_llm.py [--n 1000] [--latency 0.05] [--repeat 3] [--evolve] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fakeserver import subprocess_server  # noqa: E402

from evolcoder.config import LLMConfig  # noqa: E402
from evolcoder.llm.base import ChatRequest  # noqa: E402
from evolcoder.llm.client import make_client  # noqa: E402
from evolcoder.evolution.prompts import paper_prompt  # noqa: E402


def _requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest.user(paper_prompt("constraints", f"[{tag}] Write a function that returns the {i}-th "
                                         "Fibonacci number using an iterative loop."), max_tokens=512)
            for i in range(n)]


async def _run(cfg: LLMConfig, requests: list[ChatRequest]) -> tuple[float, dict]:
    client = make_client(cfg, stage="bench")
    try:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client.complete(r) for r in requests))
        wall = time.perf_counter() - start
        return wall, {**client.usage(), "cpu_s": time.process_time() - cpu}
    finally:
        await client.aclose()


def _evolve_items(n: int) -> list[dict]:
    from evolcoder.records import seed_record

    return [seed_record(f"Write a Python function that returns the {i}-th triangular number for input n.", "", "")
            for i in range(n)]


async def _run_round(cfg: LLMConfig, items: list[dict]) -> tuple[float, dict]:
    from evolcoder.config import EvolConfig
    from evolcoder.evolution.rounds import RoundRunner
    from evolcoder.evolution.plan import round_plan

    plan = round_plan(EvolConfig(rounds=1), cfg, 1)
    client = make_client(cfg, stage="bench-round@1")
    try:
        start = time.perf_counter()
        await RoundRunner(plan, client).run(items, progress=False)
        return time.perf_counter() - start, client.usage()
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000,
                        help="requests at concurrency 8 and 32; with --evolve also the seed items of a round")
    parser.add_argument("--n1", type=int, default=200, help="requests at concurrency 1 (ideal 20/s at 50 ms)")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrency; the summary takes the median")
    parser.add_argument("--evolve", action="store_true", help="also measure a round of --n seed items through RoundRunner (two calls each)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: CI checks the bench still runs")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.n1, args.concurrency, args.repeat, args.evolve = 40, 10, [1, 8], 1, True

    rows = []
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; server in a subprocess, "
          f"latency {args.latency * 1000:.0f} ms; c=1 uses {args.n1} requests, others {args.n}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, subprocess_server(latency=args.latency) as url:
        for conc in args.concurrency:
            n = args.n1 if conc == 1 else args.n
            for rep in range(args.repeat):
                cfg = LLMConfig(provider="openai", model="fake", base_url=url, concurrency=conc, timeout_s=30, max_attempts=3,
                                cache=str(Path(tmp) / f"c{conc}-{rep}.sqlite"))
                requests = _requests(n, f"c{conc}-{rep}")
                wall, usage = asyncio.run(_run(cfg, requests))
                cached_wall, cached_usage = asyncio.run(_run(cfg, requests))
                ideal = conc / args.latency
                rows.append({"what": "client", "concurrency": conc, "rep": rep, "requests": n,
                             "wall_s": round(wall, 3), "calls_per_s": round(n / wall, 1),
                             "ideal_calls_per_s": ideal, "fraction_of_ideal": round(n / wall / ideal, 3),
                             "cached_wall_s": round(cached_wall, 3),
                             "cached_fraction": round(cached_wall / wall, 4),
                             "paid": usage["requests"], "cached_paid": cached_usage["requests"],
                             "retries": usage["retries"],
                             "client_cpu_ms_per_call": round(1000 * usage["cpu_s"] / n, 3),
                             "loadavg_1m": round(os.getloadavg()[0], 2)})
                print(_fmt(rows[-1]), flush=True)
        if args.evolve:
            for conc in [c for c in args.concurrency if c > 1]:
                cfg = LLMConfig(provider="openai", model="fake", base_url=url, concurrency=conc, timeout_s=30, max_attempts=3,
                                cache=str(Path(tmp) / f"round{conc}.sqlite"))
                items = _evolve_items(args.n)
                wall, usage = asyncio.run(_run_round(cfg, items))
                cached_wall, _ = asyncio.run(_run_round(cfg, items))
                calls = usage["requests"] + usage["cache_hits"]
                ideal = conc / args.latency
                rows.append({"what": "round", "concurrency": conc, "requests": calls,
                             "wall_s": round(wall, 3), "calls_per_s": round(calls / wall, 1),
                             "ideal_calls_per_s": ideal, "fraction_of_ideal": round(calls / wall / ideal, 3),
                             "cached_wall_s": round(cached_wall, 3),
                             "cached_fraction": round(cached_wall / wall, 4),
                             "paid": usage["requests"], "retries": usage["retries"]})
                print(_fmt(rows[-1]), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print()
    for conc in args.concurrency:
        reps = [r for r in rows if r["what"] == "client" and r["concurrency"] == conc]
        fractions = sorted(r["fraction_of_ideal"] for r in reps)
        cached = sorted(r["cached_fraction"] for r in reps)
        target = " (target >= 80%)" if conc == 32 else ""
        print(f"concurrency {conc}: median {statistics.median(fractions):.1%} of ideal "
              f"[{fractions[0]:.1%}..{fractions[-1]:.1%}] over {len(reps)} runs{target}; cached re-run median "
              f"{statistics.median(cached):.2%} of the first run's wall time [max {cached[-1]:.2%}] (target <= 5%)")


def _fmt(r: dict) -> str:
    return (f"{r['what']:<6} c={r['concurrency']:<3} n={r['requests']:<5} {r['wall_s']:>7.2f} s "
            f"{r['calls_per_s']:>7.1f} calls/s  ideal {r['ideal_calls_per_s']:>6.0f}  "
            f"{r['fraction_of_ideal']:>6.1%} of ideal   cached re-run {r['cached_wall_s']:.3f} s "
            f"= {r['cached_fraction']:.2%} of first"
            + (f"  client CPU {r['client_cpu_ms_per_call']:.2f} ms/call, load {r['loadavg_1m']}"
               if "client_cpu_ms_per_call" in r else ""))


if __name__ == "__main__":
    main()
