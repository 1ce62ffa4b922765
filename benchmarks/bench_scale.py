"""The data half (seed, plan, one round, merge) at scale, and a round against a rate-limited key.

Issue 22. Runs the real stage scripts as subprocesses, as `dvc repro` would, against the
loopback server (`tests/fakeserver.py`, its own process, 50 ms per request), for each seed
count in `--sizes` (default 2k, 20k, 100k; evolution verify off, so two requests per seed).
Per size it prints the round's wall time, requests/s while busy (requests over the round's
own `wall_s`), CPU time per call of the round process, and the peak RSS of the round and of
the merge (each stage's own `ru_maxrss`, from `os.wait4`); then the growth of each figure
from one size to the next over the growth in seeds, so linear growth reads as 1.0.

`--rate-limit N` adds the issue's pacing figure: one round of N seeds at concurrency
`--rl-concurrency` (256) against a server that allows `--rpm` (6,000) requests a minute and
answers the excess with 429 and OpenAI's `x-ratelimit-*` headers, no Retry-After; printed:
answers per second over the allowed rate, and the share of requests refused.

`--repo` runs another checkout's stages (e.g. main, for the before/after table) with this
checkout's server. `--smoke` is a few hundred seeds and a small rate-limited round (seconds);
any stage failing exits non-zero.

    python benchmarks/bench_scale.py [--sizes 2000,20000,100000] [--concurrency 256]
        [--rate-limit 3000 --rpm 6000] [--repo /tmp/main] [--json out.json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

import yaml  # noqa: E402
from fakeserver import remote_stats, subprocess_server  # noqa: E402

VERBS = ["sum", "maximum", "median", "mode", "product", "range", "mean", "minimum", "count", "sort"]
NOUNS = ["integers", "floats", "words", "dates", "intervals", "matrices", "strings", "pairs"]


def write_seeds(path: Path, n: int) -> None:
    """`n` distinct, plausible Code Alpaca-style seeds (no two alike, so none is deduplicated)."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            verb, noun = VERBS[i % len(VERBS)], NOUNS[(i // len(VERBS)) % len(NOUNS)]
            text = (f"Write a Python function number {i} that returns the {verb} of a list of {noun}, "
                    f"ignoring entries above {i % 997} and reporting how many were skipped.")
            out.write(json.dumps({"instruction": text, "input": "", "output": f"def f{i}(xs):\n    return xs"}) + "\n")


def params_for(repo: Path, seeds: Path, base_url: str, concurrency: int, cache: Path) -> dict[str, Any]:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["seed"].update({"path": str(seeds), "n": 0})
    params["evol"].update({"rounds": 1, "verify": "off"})
    # the evolver's identity has its own section since issue 21; a --repo tree from before keeps it in llm
    identity = params["evolver"] if "evolver" in params else params["llm"]
    identity.update({"provider": "openai", "model": "fake", "base_url": base_url})
    params["llm"].update({"concurrency": concurrency, "cache": str(cache), "timeout_s": 60.0})
    return params


class StageFailed(RuntimeError):
    """A stage exited non-zero (the message holds its exit code and the end of its log)."""


def run_stage(repo: Path, cwd: Path, name: str, *args: str) -> dict[str, float]:
    """Run one stage script; its wall time, CPU seconds and peak RSS (MB). Raises on failure."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1"}
    env.setdefault("EVOLCODER_DATA_DIR", str(HERE.parent / "shared" / "data"))
    start = time.perf_counter()
    with open(cwd / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(repo / "stages" / f"{name}.py"), "--params", "params.yaml",
                                 *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        tail = (cwd / f"{name}.log").read_text()[-2000:]
        raise StageFailed(f"stage {name} exited {code}:\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def data_half(repo: Path, work: Path, n: int, base_url: str, concurrency: int, merge: bool = True) -> dict[str, Any]:
    """seed -> plan -> round 1 -> merge for `n` seeds in `work`; the figures of each stage."""
    work.mkdir(parents=True)
    seeds = work / "seeds.jsonl"
    write_seeds(seeds, n)
    (work / "params.yaml").write_text(yaml.safe_dump(params_for(repo, seeds, base_url, concurrency,
                                                                work / "cache.sqlite"), sort_keys=False))
    run_stage(repo, work, "seed", "--out", "data/seed/seed.jsonl", "--metrics", "metrics/seed.json")
    run_stage(repo, work, "plan", "--out-dir", "data/plan", "--slots", "1")
    rnd = run_stage(repo, work, "round", "--plan", "data/plan/round_1.json", "--prev", "data/seed/seed.jsonl",
                    "--out-dir", "data/rounds/r1", "--no-progress")
    stats = json.loads((work / "data/rounds/r1/stats.json").read_text())
    out: dict[str, Any] = {"seeds": n, "requests": stats["llm_requests"], "round": rnd, "stats": stats,
                           "busy_req_s": stats["llm_requests"] / stats["wall_s"],
                           "cpu_ms_per_call": 1000 * rnd["cpu_s"] / max(1, stats["llm_requests"])}
    if merge:
        out["merge"] = run_stage(
            repo, work, "merge", "--seed", "data/seed/seed.jsonl", "--out", "data/train/train.jsonl",
            "--dropped", "data/train/dropped.jsonl", "--metrics", "metrics/merge.json", "--evol-metrics",
            "metrics/evol.json", "--evol-plot", "metrics/evol_rounds.json", "--plan-dir", "data/plan",
            "--rounds-dir", "data/rounds", "--card", "data/train/README.md")
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'seeds':>8} {'requests':>9} {'round wall s':>12} {'req/s busy':>10} {'CPU ms/call':>11} "
          f"{'round RSS MB':>12} {'merge wall s':>12} {'merge RSS MB':>12}")
    for r in rows:
        merge = r.get("merge", {})
        print(f"{r['seeds']:>8} {r['requests']:>9} {r['round']['wall_s']:>12.1f} {r['busy_req_s']:>10.0f} "
              f"{r['cpu_ms_per_call']:>11.3f} {r['round']['rss_mb']:>12.0f} {merge.get('wall_s', 0):>12.1f} "
              f"{merge.get('rss_mb', 0):>12.0f}")
    for a, b in zip(rows, rows[1:]):
        grow = b["seeds"] / a["seeds"]

        def ratio(get: Any) -> str:
            return f"{get(b) / get(a) / grow:.2f}" if get(a) else "-"

        print(f"  {a['seeds']} -> {b['seeds']} (x{grow:g} seeds), growth per seed (1.00 = linear): "
              f"round wall {ratio(lambda r: r['round']['wall_s'])}, "
              f"round RSS {ratio(lambda r: r['round']['rss_mb'])}, "
              f"merge RSS {ratio(lambda r: r.get('merge', {}).get('rss_mb', 0))}, "
              f"merge wall {ratio(lambda r: r.get('merge', {}).get('wall_s', 0))}")


def rate_limited(repo: Path, work: Path, n: int, rpm: float, concurrency: int) -> dict[str, Any]:
    """One round of `n` seeds against a key allowing `rpm`: achieved rate over allowed, refusals."""
    with subprocess_server(latency=0.05, rpm=rpm) as url:
        start = time.perf_counter()
        try:
            row = data_half(repo, work, n, url, concurrency, merge=False)
        except StageFailed as exc:  # what a rate limit does to a client that only backs off
            server = remote_stats(url)
            return {"seeds": n, "rpm": rpm, "concurrency": concurrency, "error": str(exc).splitlines()[0],
                    "received": server["paths"].get("/v1/chat/completions", 0), "refused": server.get("refused", 0),
                    "answered": len(server["completed"]), "wall_s": time.perf_counter() - start}
        server = remote_stats(url)
    refused = server.get("refused", 0)
    received = server["paths"].get("/v1/chat/completions", 0)
    stats = row["stats"]
    return {"seeds": n, "rpm": rpm, "concurrency": concurrency, "answered": stats["llm_requests"],
            "received": received, "refused": refused, "refused_share": refused / max(1, received),
            "failed": stats["failed"], "wall_s": stats["wall_s"],
            "rate_share": stats["llm_requests"] / stats["wall_s"] / (rpm / 60.0),
            "waits": stats.get("llm_rate_limit_waits"), "window_lowest": stats.get("llm_window_lowest")}


async def _floor_run(n: int, concurrency: int, url: str, how: str, cache: Path) -> tuple[float, float]:
    """(wall s, CPU s) of `n` distinct chat requests sent one of three ways."""
    import asyncio

    import aiohttp
    import openai

    from evolcoder.config import LLMConfig
    from evolcoder.llm.base import ChatRequest
    from evolcoder.llm.client import make_client

    bodies = [{"model": "fake", "messages": [{"role": "user", "content": f"[{how}] Write function {i}."}],
               "temperature": 0.7, "top_p": 0.95, "max_tokens": 256, "seed": 0} for i in range(n)]
    gate = asyncio.Semaphore(concurrency)
    if how == "client":
        client = make_client(LLMConfig(provider="openai", model="fake", base_url=url, concurrency=concurrency,
                                       cache=str(cache)), stage="floor")
        send = lambda b: client.complete(ChatRequest.user(b["messages"][0]["content"], temperature=0.7,  # noqa: E731
                                                          top_p=0.95, max_tokens=256))
        close = client.aclose
    elif how == "sdk":
        sdk = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, http_client=openai.DefaultAioHttpClient(
            limits=type(openai.DEFAULT_CONNECTION_LIMITS)(max_connections=concurrency,
                                                          max_keepalive_connections=concurrency)))

        async def send(b: dict) -> Any:
            async with gate:
                return await sdk.post("/chat/completions", body=b, cast_to=object)
        close = sdk.close
    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        async def send(b: dict) -> Any:
            async with gate, session.post(url + "/chat/completions", json=b) as resp:
                return await resp.json()
        close = session.close
    start, cpu = time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(*(send(b) for b in bodies))
    finally:
        await close()
    return time.perf_counter() - start, time.process_time() - cpu


def client_floor(n: int, concurrency: int, latency: float, work: Path) -> list[dict[str, Any]]:
    """CPU per call of the full client, of the openai SDK's `post` alone, and of bare aiohttp."""
    import asyncio

    rows = []
    with subprocess_server(latency=latency) as url:
        for how in ("client", "sdk", "aiohttp"):
            wall, cpu = asyncio.run(_floor_run(n, concurrency, url, how, work / f"floor-{how}.sqlite"))
            rows.append({"how": how, "req_s": n / wall, "cpu_ms_per_call": 1000 * cpu / n})
            print(f"  {how:<8} {n / wall:>7.0f} req/s  {1000 * cpu / n:.3f} ms CPU/call", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate-limit", type=int, default=0, help="seeds in the rate-limited round (0: skip)")
    parser.add_argument("--rpm", type=float, default=6000.0)
    parser.add_argument("--rl-concurrency", type=int, default=256)
    parser.add_argument("--repo", type=Path, default=HERE, help="checkout whose stages run (default: this one)")
    parser.add_argument("--floor", type=int, default=0,
                        help="also time N requests through the client, the SDK's post alone and bare aiohttp")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="300 seeds and a 150-seed rate-limited round")
    args = parser.parse_args(argv)
    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",") if s]
    rl_items, rpm = (150, 3000.0) if args.smoke else (args.rate_limit, args.rpm)
    print(f"repo {args.repo}; load average {os.getloadavg()[0]:.2f}; server latency {args.latency * 1000:.0f} ms")
    report: dict[str, Any] = {"repo": str(args.repo), "sizes": [], "load": os.getloadavg()}
    code = 0
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        with subprocess_server(latency=args.latency) as url:
            for n in sizes:
                row = data_half(args.repo, Path(tmp) / f"n{n}", n, url, args.concurrency)
                report["sizes"].append({k: v for k, v in row.items() if k != "stats"})
                print(f"  {n} seeds done: round {row['round']['wall_s']:.1f} s, {row['busy_req_s']:.0f} req/s",
                      flush=True)
        print_table(report["sizes"])
        if rl_items:
            rl = rate_limited(args.repo, Path(tmp) / "ratelimit", rl_items, rpm, args.rl_concurrency)
            report["rate_limit"] = rl
            if "error" in rl:
                print(f"rate limit: {rl['seeds']} seeds at concurrency {rl['concurrency']} against {rl['rpm']:.0f} "
                      f"rpm FAILED ({rl['error']}): {rl['refused']} of {rl['received']} requests refused "
                      f"({rl['refused'] / max(1, rl['received']):.1%}), {rl['answered']} answered in "
                      f"{rl['wall_s']:.0f} s ({rl['answered'] / rl['wall_s'] / (rl['rpm'] / 60):.1%} of the "
                      "allowed rate)")
                code = 1
            else:
                print(f"rate limit: {rl['seeds']} seeds at concurrency {rl['concurrency']} against "
                      f"{rl['rpm']:.0f} rpm: answers at {rl['rate_share']:.1%} of the allowed rate, {rl['refused']} "
                      f"of {rl['received']} requests refused ({rl['refused_share']:.1%}), {rl['failed']} items failed, "
                      f"{rl['waits']} requests paced, window down to {rl['window_lowest']}")
        floor_n = 300 if args.smoke else args.floor
        if floor_n:
            print(f"client CPU floor ({floor_n} requests, concurrency {args.concurrency}, this process):")
            report["floor"] = client_floor(floor_n, args.concurrency, args.latency, Path(tmp))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
