"""What one decode step costs by batch rows: the price of rows that finished but are still fed.

`generate()` keeps a finished row in its batch (it is fed pad tokens) until the batch's
last row ends, so a batch of 16 where one row runs to the token limit pays the 16-row step
cost for every step. This times single decode steps (KV cache filled by a short prompt)
at several batch sizes in one process, in alternating order, and prints wall and CPU ms
per step and per row: the ratio step(16) / step(k) is what dropping finished rows from the
batch would save once k rows are left. An fp32 model is timed twice, with ATen's linear
layers and with the oneDNN-prepacked ones generation uses (`evolcoder.hf.prepack`). Run it under the AVX2 caps to see the laptop class:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_step_cost.py [--model DIR] [--rows 1,4,16] [--steps 8]
"""

from __future__ import annotations

import time

import click
from bench_generate import _default_model, _smoke_model


def _cache(out):
    """The KV cache of a forward pass, under either attribute name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _time_steps(gen, rows: int, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of `steps` cached decode steps for `rows` identical short prompts."""
    import torch

    import inspect

    # transformers 5 renames `past_key_values` to `cache`; use whichever this model takes.
    kw = "cache" if "cache" in inspect.signature(gen.lm.forward).parameters else "past_key_values"
    enc = gen.tokenizer(["def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n"] * rows,
                        return_tensors="pt").to(gen.device)
    with torch.inference_mode():
        out = gen.lm(**enc, use_cache=True)
        cache, token = _cache(out), out.logits[:, -1:].argmax(-1)
        mask = enc["attention_mask"]
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
            out = gen.lm(input_ids=token, attention_mask=mask, use_cache=True, **{kw: cache})
            cache, token = _cache(out), out.logits[:, -1:].argmax(-1)
        return time.perf_counter() - wall, time.process_time() - cpu


@click.command()
@click.option("--model", default=None, help="Model directory (default: the embedded gemma-3-270m).")
@click.option("--rows", default="1,4,16", show_default=True, help="Batch rows to time; the last is the reference.")
@click.option("--steps", default=8, show_default=True, help="Decode steps timed per configuration and round.")
@click.option("--rounds", default=2, show_default=True, help="Repetitions, in alternating order.")
@click.option("--dtype", default="auto", show_default=True)
@click.option("--smoke", is_flag=True, help="A tiny model, 2 steps: CI checks the bench still runs.")
def main(model: str | None, rows: str, steps: int, rounds: int, dtype: str, smoke: bool) -> None:
    import os

    from evolcoder.hf.generation import Generator
    from evolcoder.hf.precision import isa_cap

    if smoke:  # fp32, so that both the ATen and the prepacked path run on any CPU
        model, steps, rounds, dtype = model or _smoke_model(), 2, 1, "float32"
    path = model or _default_model()
    gens = {"aten": Generator(path, dtype=dtype, prepack=False), "prepacked": Generator(path, dtype=dtype)}
    if not gens["prepacked"].prepacked:
        del gens["prepacked"]  # bf16 or a GPU: nothing is prepacked, one column
    sizes = [int(r) for r in rows.split(",")]
    totals = {(kind, size): [0.0, 0.0] for kind in gens for size in sizes}
    load = os.getloadavg()[0]
    for round_ in range(rounds):
        for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
            for kind in (list(gens) if round_ % 2 == 0 else list(gens)[::-1]):
                wall, cpu = _time_steps(gens[kind], size, steps)
                totals[kind, size][0] += wall
                totals[kind, size][1] += cpu
    n = steps * rounds
    ref = sizes[-1]
    some = next(iter(gens.values()))
    click.echo(f"model {some.lm.config._name_or_path}, dtype {some.dtype}, ISA cap {isa_cap() or 'none'}, "
               f"{n} steps per size, load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    click.echo(f"{'rows':>4} " + " ".join(f"{kind + ' wall ms/step':>24} {'cpu ms/row':>10}" for kind in gens)
               + f" {'step({}) / step(rows)'.format(ref):>21}" + (f" {'aten / prepacked':>16}" if len(gens) > 1 else ""))
    last = list(gens)[-1]
    for size in sizes:
        cells = []
        for kind in gens:
            wall, cpu = (1000 * t / n for t in totals[kind, size])
            cells.append(f"{wall:>24.1f} {cpu / size:>10.1f}")
        line = f"{size:>4} " + " ".join(cells) + f" {totals[last, ref][0] / totals[last, size][0]:>20.2f}x"
        if len(gens) > 1:
            line += f" {totals['aten', size][0] / totals['prepacked', size][0]:>15.2f}x"
        click.echo(line)


if __name__ == "__main__":
    main()
