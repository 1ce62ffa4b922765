"""DVC stage `round@<r>`: one evolution round (its plan file; params `llm` and `sandbox`: transport only).

Exit codes: 2 bad input or params, 3 call or dollar budget spent, 4 items failed transiently or
the endpoint is down, 5 batches still in flight (`llm.batch_wait: false`). In every failing case
nothing is written, so DVC records no result and the next `dvc repro` runs the round again
(answered requests come from the cache).
"""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import Params
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.run import run_round


@click.command()
@click.option("--params", default="params.yaml", show_default=True,
              help="Params file; only transport settings (`llm`, `sandbox`) are read here.")
@click.option("--plan", "plan_path", required=True, help="This round's plan file from the `plan` stage.")
@click.option("--prev", required=True, help="Previous round's pool (the seed file for round 1).")
@click.option("--model-dir", default=None, help="Materialised evolver model (transformers provider).")
@click.option("--out-dir", required=True, help="Directory for pool/kept/outcomes/stats.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@stage_main
def main(params: str, plan_path: str, prev: str, model_dir: str | None, out_dir: str, progress: bool) -> None:
    every = Params.load(params)
    run_round(RoundPlan.from_file(plan_path), prev, every.llm, every.sandbox, model_dir, out_dir, progress,
              echo=click.echo)


if __name__ == "__main__":
    main()
