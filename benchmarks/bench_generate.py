"""Generation throughput: batch 1 vs batched, same prompts, same process, side by side.

Target (issue 5): on CPU with the embedded gemma-3-270m, 20 HumanEval prompts, batched
generation >= 4x the tokens/s of batch 1. Runs the real `HFBackend` path (left padding,
length-sorted batches). Early stop is off and EOS is ignored so every configuration
generates exactly the same number of tokens; tokens/s is then a fair ratio.

    python benchmarks/bench_generate.py [--model DIR] [--prompts 20] [--tokens 32] [--batches 1,8,16]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click


def _default_model() -> str:
    from evolcoder.hf.models import EMBEDDED, materialize

    out = Path(os.environ.get("EVOLCODER_CACHE_DIR") or Path.home() / ".cache" / "evolcoder") / "bench-gemma"
    if not (out / "config.json").is_file():
        click.echo(f"materialising {EMBEDDED} into {out} (once, ~1 min)", err=True)
        materialize(EMBEDDED, out)
    return str(out)


def _smoke_model() -> str:
    """A tiny random model built in a temporary directory (tests/tinymodel.py): seconds, offline."""
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tinymodel import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "tiny"))


@click.command()
@click.option("--model", default=None, help="Model directory (default: the embedded gemma-3-270m).")
@click.option("--prompts", default=20, show_default=True, help="HumanEval prompts.")
@click.option("--tokens", default=32, show_default=True, help="New tokens per prompt (forced).")
@click.option("--batches", default="1,8,16", show_default=True, help="Batch sizes; the first is the baseline.")
@click.option("--dtype", default="auto", show_default=True, help="auto: bf16 only where native.")
@click.option("--mode", default="instruct", type=click.Choice(["instruct", "completion"]), show_default=True)
@click.option("--threads", default=0, help="torch threads (0 = torch default).")
@click.option("--rounds", default=2, show_default=True, help="Repetitions, in alternating order.")
@click.option("--smoke", is_flag=True, help="A tiny model, 2 prompts x 4 tokens: CI checks the bench still runs.")
def main(model: str | None, prompts: int, tokens: int, batches: str, dtype: str, mode: str, threads: int,
         rounds: int, smoke: bool) -> None:
    import torch

    from evolcoder.config import GenerateConfig, build
    from evolcoder.eval.generate import HFBackend, make_requests
    from evolcoder.eval.problems import load_benchmark

    if threads:
        torch.set_num_threads(threads)
    if smoke:
        model, prompts, tokens, batches, rounds = model or _smoke_model(), 2, 4, "1,2", 1
    model = model or _default_model()
    problems = load_benchmark("humaneval").problems[:prompts]
    backend = HFBackend(model, dtype=dtype)
    # Forced length: EOS may not end a row early, so each batch size does identical work.
    backend.generator.lm.generation_config.min_new_tokens = tokens
    sizes = [int(b) for b in batches.split(",")]
    totals = {size: [0, 0.0, 0.0] for size in sizes}
    # ABBA order (1,8,16 then 16,8,1, ...): on a shared machine the load drifts; alternating
    # the order spreads the drift over every configuration instead of penalising one.
    for round_ in range(rounds):
        for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
            cfg = build(GenerateConfig, {"batch_size": size, "max_new_tokens": tokens, "early_stop": False,
                                         "dtype": dtype}, "generate")
            requests = make_requests(problems, mode, cfg)
            started, cpu = time.perf_counter(), time.process_time()
            out = backend.generate(requests, cfg)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            generated = sum(g.n_tokens or 0 for gens in out for g in gens)
            totals[size][0] += generated
            totals[size][1] += wall
            totals[size][2] += cpu
            click.echo(json.dumps({"round": round_, "batch_size": size, "tokens": generated,
                                   "seconds": round(wall, 2), "tokens_per_s": round(generated / wall, 2)}), err=True)
    rows = [{"batch_size": size, "tokens": totals[size][0], "seconds": round(totals[size][1], 2),
             "tokens_per_s": round(totals[size][0] / totals[size][1], 2),
             "cpu_ms_per_token": round(1000 * totals[size][2] / totals[size][0], 1)} for size in sizes]
    base = rows[0]["tokens_per_s"]
    click.echo(f"model {model} dtype {dtype} mode {mode}, {len(problems)} prompts x {tokens} tokens x "
               f"{rounds} rounds, torch threads {torch.get_num_threads()}")
    click.echo(f"{'batch':>5}  {'tokens':>6}  {'seconds':>8}  {'tok/s':>7}  {'vs batch ' + str(rows[0]['batch_size']):>10}"
               f"  {'cpu ms/tok':>10}")
    for row in rows:
        click.echo(f"{row['batch_size']:>5}  {row['tokens']:>6}  {row['seconds']:>8.2f}  "
                   f"{row['tokens_per_s']:>7.2f}  {row['tokens_per_s'] / base:>9.2f}x  {row['cpu_ms_per_token']:>10.1f}")
    best = max(rows[1:], key=lambda r: r["tokens_per_s"], default=rows[0])
    verdict = "met" if best["tokens_per_s"] >= 4 * base else "NOT met"
    click.echo(f"target batched >= 4x batch {rows[0]['batch_size']}: {verdict} "
               f"({best['tokens_per_s'] / base:.2f}x at batch {best['batch_size']})")


if __name__ == "__main__":
    main()
