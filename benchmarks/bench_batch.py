"""Batch mode at scale: one round of 20,000 items through the fake Batch API vs online.

Issue 20: the round's client in `llm.mode: batch` against the loopback fake of
`/v1/files` + `/v1/batches` (tests/fakebatch.py, a separate process), beside the same round
online against the same server. Each mode runs in its own child process so that its CPU
time and peak RSS are its own. Printed per mode: requests, batches, wall time, the client's
CPU time per request, peak memory (max RSS), and the batch/online ratios. The data of the
two runs must be identical (the benchmark fails otherwise), and so must a batch re-run
(zero new batches).

    python benchmarks/bench_batch.py [--items 20000] [--concurrency 32] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _items(n: int) -> list[dict]:
    from evolcoder.records import seed_record

    return [seed_record(f"Write a Python function that returns the {i}-th triangular number for input n.", "", "")
            for i in range(n)]


async def _round(mode: str, url: str, cache: str, items: int, concurrency: int) -> dict:
    """One round (evolve + answer per item, no verification) in this process; what it cost."""
    from evolcoder.config import EvolConfig, LLMConfig
    from evolcoder.evolution.plan import round_plan
    from evolcoder.evolution.rounds import RoundRunner
    from evolcoder.llm.batch import run_passes
    from evolcoder.llm.client import make_client

    cfg = LLMConfig(provider="openai", model="fake", base_url=url, concurrency=concurrency, timeout_s=120,
                    max_attempts=3, cache=cache, mode=mode, batch_poll_s=0.2, max_tokens=512)
    plan = round_plan(EvolConfig(rounds=1, verify="off"), cfg, 1)
    pool = _items(items)
    client = make_client(cfg, stage="bench-batch")
    start, cpu = time.perf_counter(), time.process_time()
    try:
        runner = RoundRunner(plan, client)
        result = await run_passes(client, cfg, lambda: runner.run(pool, progress=False), progress=False)
    finally:
        await client.aclose()
    usage = result.usage
    data = "".join(json.dumps(o.record(), sort_keys=True) + "\n" for o in result.outcomes)
    return {"mode": mode, "items": items, "requests": usage["requests"], "batches": usage.get("batches", 0),
            "wall_s": round(time.perf_counter() - start, 2), "cpu_s": round(time.process_time() - cpu, 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "kept": sum(o.status == "kept" for o in result.outcomes),
            "failed": sum(o.status == "failed" for o in result.outcomes),
            "data_sha256": hashlib.sha256(data.encode()).hexdigest()}


def _child(mode: str, url: str, cache: str, items: int, concurrency: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--cache", cache,
                           "--items", str(items), "--concurrency", str(concurrency)],
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _server(polls: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fakebatch.py"), "--port", "0", "--polls",
                             str(polls)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"fake batch server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32, help="online requests in flight")
    parser.add_argument("--smoke", action="store_true", help="200 items, seconds; non-zero exit on any error")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_round(args.child, args.url, args.cache, args.items, args.concurrency))))
        return
    items = 200 if args.smoke else args.items
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {items} items, one round "
          "(evolve + answer), fake server in its own process", flush=True)
    server, url = _server(polls=2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            online = _child("online", url, str(Path(tmp) / "online.sqlite"), items, args.concurrency)
            batch = _child("batch", url, str(Path(tmp) / "batch.sqlite"), items, args.concurrency)
            rerun = _child("batch", url, str(Path(tmp) / "batch.sqlite"), items, args.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rerun["mode"] = "re-run"
    for row in (online, batch, rerun):
        row["cpu_ms_per_request"] = round(1000 * row["cpu_s"] / row["requests"], 3) if row["requests"] else 0.0
        print(f"{row['mode']:<7} requests {row['requests']:>6}  batches {row['batches']:>3}  wall {row['wall_s']:>7.2f} s  "
              f"client CPU {row['cpu_s']:>7.2f} s = {row['cpu_ms_per_request']:.3f} ms/request  "
              f"peak RSS {row['max_rss_mb']:.0f} MB  kept {row['kept']} failed {row['failed']}")
    print(f"batch / online: client CPU per request x{batch['cpu_ms_per_request'] / online['cpu_ms_per_request']:.2f}, "
          f"peak RSS x{batch['max_rss_mb'] / online['max_rss_mb']:.2f}, wall x{batch['wall_s'] / online['wall_s']:.2f}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    problems = []
    if batch["data_sha256"] != online["data_sha256"]:
        problems.append("batch data differ from online data")
    if rerun["batches"] or rerun["requests"]:
        problems.append(f"the re-run paid again ({rerun['batches']} batches)")
    if online["failed"] or batch["failed"]:
        problems.append("items failed")
    if problems:
        raise SystemExit("; ".join(problems))
    print("batch data identical to online; the re-run submitted nothing")


if __name__ == "__main__":
    main()
