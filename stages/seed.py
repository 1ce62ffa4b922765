"""DVC stage `seed`: validate and sample the seed instructions (params section `seed`)."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import SeedConfig, load_section
from evolcoder.jsonio import write_json, write_jsonl
from evolcoder.dataset.seed import load_seed


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `seed` from.")
@click.option("--out", required=True, help="Seed JSONL to write.")
@click.option("--metrics", required=True, help="Counts of read/skipped/duplicate/written records.")
@stage_main
def main(params: str, out: str, metrics: str) -> None:
    cfg = load_section(SeedConfig, "seed", params)
    result = load_seed(cfg)
    for line in result.skipped:
        click.echo(f"skipped {line}", err=True)
    write_jsonl(out, result.records)
    write_json(metrics, result.stats)
    click.echo(f"seed: {result.stats}")


if __name__ == "__main__":
    main()
