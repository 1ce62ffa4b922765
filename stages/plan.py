"""DVC stage `plan`: one resolved settings file per round slot (params `evol`, `evolver`)."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import Params
from evolcoder.evolution.plan import parse_slots, write_plans


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--params", default="params.yaml", show_default=True, help="Params file.")
@click.option("--out-dir", required=True, help="Directory for round_<r>.json files and manifest.json.")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="Slot count, for use outside dvc.yaml; there the slot table is passed instead.")
@click.pass_context
@stage_main
def main(ctx: click.Context, params: str, out_dir: str, slots: int | None) -> None:
    """The round slots come from dvc.yaml's `vars: slots`, unpacked by DVC into `--1 POOL --2 POOL ...`."""
    every = Params.load(params)  # validates every section: a typo anywhere fails here, before any paid call
    paths = write_plans(every.evol, every.evolver, out_dir, slots or parse_slots(ctx.args))
    click.echo(f"plan: {every.evol.rounds} active of {len(paths)} slots")


if __name__ == "__main__":
    main()
