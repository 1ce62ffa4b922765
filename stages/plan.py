"""DVC stage `plan`: one resolved settings file per round slot (params `evol`, `llm`)."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import EvolConfig, LLMConfig, load_section
from evolcoder.evolution.plan import write_plans


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file.")
@click.option("--out-dir", required=True, help="Directory for round_<r>.json files.")
@click.option("--slots", type=click.IntRange(min=1), required=True,
              help="Round slots declared in dvc.yaml (`vars: slots`).")
@stage_main
def main(params: str, out_dir: str, slots: int) -> None:
    evol = load_section(EvolConfig, "evol", params)
    llm = load_section(LLMConfig, "llm", params)
    paths = write_plans(evol, llm, out_dir, slots)
    click.echo(f"plan: {evol.rounds} active of {len(paths)} slots")


if __name__ == "__main__":
    main()
