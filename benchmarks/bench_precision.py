"""fp32 vs bf16 and batch sizes, for the evolver and for eval generation, on this machine.

`auto` precision picks bf16 only where the hardware has it natively; this prints whether
that choice is right here. Both workloads run the one shared loop
(`evolcoder.hf.generation.Generator`), as the stages do: the evolver's plain prompts with
the candidate sampler (evolver.temperature/top_p), and HumanEval completion prompts decoded
greedily. Every configuration generates exactly the same number of tokens (EOS blocked,
no stop strings), so tokens/s ratios compare equal work; configurations run in
alternating order (ABBA) so drifting load on a shared machine spreads over all of them.

    python benchmarks/bench_precision.py [--model DIR] [--tokens 24] [--batches 4,16] [--rounds 2]
"""

from __future__ import annotations

import json
import time
from itertools import product

import click
from bench_generate import _default_model, _smoke_model


def _workloads(n: int) -> dict[str, tuple[list, object]]:
    from evolcoder.jsonio import read_jsonl
    from evolcoder.eval.problems import load_benchmark
    from evolcoder.evolution.prompts import paper_prompt
    from evolcoder.hf.generation import Prompt
    from evolcoder.llm.hf_provider import plain_prompt

    humaneval = [Prompt(p.prompt) for p in load_benchmark("humaneval").problems[:n]]
    seeds = [record for _, record in read_jsonl("src/evolcoder/resources/seed.jsonl")][:n]
    evolver = [Prompt(plain_prompt((("user", paper_prompt("constraints", s["instruction"])),))) for s in seeds]
    return {"evolver": (evolver, dict(temperature=0.7, top_p=0.95)), "eval": (humaneval, dict(temperature=0.0))}


@click.command()
@click.option("--model", default=None, help="Model directory (default: the embedded gemma-3-270m).")
@click.option("--prompts", default=16, show_default=True, help="Prompts per workload.")
@click.option("--tokens", default=24, show_default=True, help="New tokens per prompt (forced).")
@click.option("--batches", default="4,16", show_default=True, help="Batch sizes.")
@click.option("--dtypes", default="float32,bfloat16", show_default=True)
@click.option("--rounds", default=2, show_default=True, help="Repetitions, in alternating order.")
@click.option("--threads", default=0, help="torch threads (0 = torch default).")
@click.option("--smoke", is_flag=True, help="A tiny model, 2 prompts x 4 tokens: CI checks the bench still runs.")
def main(model: str | None, prompts: int, tokens: int, batches: str, dtypes: str, rounds: int,
         threads: int, smoke: bool) -> None:
    """Prints wall tokens/s and CPU seconds per token: on a loaded shared machine wall time
    mostly measures the neighbours, CPU time (with --threads 1) what a token costs."""
    import torch

    from evolcoder.hf.generation import Generator, Sampling
    from evolcoder.hf.precision import cpu_has_native_bf16, resolve_dtype

    if threads:
        torch.set_num_threads(threads)
    if smoke:
        model, prompts, tokens, batches, rounds = model or _smoke_model(), 2, 4, "1,2", 1
    model = model or _default_model()
    workloads = _workloads(prompts)
    sizes = [int(b) for b in batches.split(",")]
    generators = {d: Generator(model, dtype=d) for d in dtypes.split(",")}
    for gen in generators.values():
        gen.lm.generation_config.min_new_tokens = tokens
    configs = list(product(workloads, generators, sizes))
    totals = {c: [0, 0.0, 0.0] for c in configs}
    for round_ in range(rounds):
        for work, dtype, size in (configs if round_ % 2 == 0 else configs[::-1]):
            prompt_list, decoding = workloads[work]
            sampling = Sampling(tokens, seed=round_, **decoding)
            started, cpu = time.perf_counter(), time.process_time()
            out = generators[dtype].generate(prompt_list, sampling, batch_size=size)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            generated = sum(o.n_tokens for outs in out for o in outs)
            totals[(work, dtype, size)][0] += generated
            totals[(work, dtype, size)][1] += wall
            totals[(work, dtype, size)][2] += cpu
            click.echo(json.dumps({"round": round_, "workload": work, "dtype": dtype, "batch_size": size,
                                   "tokens": generated, "tokens_per_s": round(generated / wall, 2)}), err=True)
    rate = {c: t[0] / t[1] for c, t in totals.items()}
    cost = {c: t[2] / t[0] for c, t in totals.items()}
    device = next(iter(generators.values())).device
    click.echo(f"model {model}, device {device}, torch threads {torch.get_num_threads()}, "
               f"native bf16: {cpu_has_native_bf16() if device == 'cpu' else 'see cuda'}, "
               f"auto -> {resolve_dtype('auto', device)}")
    click.echo(f"{prompts} prompts x {tokens} forced tokens x {rounds} rounds per configuration")
    first_dtype, first_size = next(iter(generators)), sizes[0]
    click.echo(f"{'workload':<8} {'dtype':<9} {'batch':>5} {'tok/s':>8} {'vs ' + first_dtype:>12} "
               f"{'vs batch ' + str(first_size):>11} {'cpu ms/tok':>10} {'cpu vs ' + first_dtype:>13}")
    for work, dtype, size in configs:
        c, r = (work, dtype, size), rate[(work, dtype, size)]
        click.echo(f"{work:<8} {dtype:<9} {size:>5} {r:>8.2f} {r / rate[(work, first_dtype, size)]:>11.2f}x "
                   f"{r / rate[(work, dtype, first_size)]:>10.2f}x {1000 * cost[c]:>10.1f} "
                   f"{cost[(work, first_dtype, size)] / cost[c]:>12.2f}x")


if __name__ == "__main__":
    main()
