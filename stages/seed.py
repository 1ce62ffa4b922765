"""DVC stage `seed`: validate and sample the seed instructions (params section `seed`).

dvc.yaml makes `${seed.path}` a dependency, so DVC hashes the seed file (or saved
`datasets` directory) itself: an unchanged run runs nothing and `dvc status` is clean.
A hub dataset id cannot be hashed, so it is snapshotted to a file first with
`evolcoder export-seed`, which records the hub commit it read (README: updating a hub seed).
"""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import SeedConfig, load_section
from evolcoder.dataset.seed import fingerprint, load_seed, snapshot_hint
from evolcoder.jsonio import write_json, write_jsonl


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `seed` from.")
@click.option("--out", required=True, help="Seed JSONL to write.")
@click.option("--metrics", required=True, help="Counts of read/skipped/duplicate/written records.")
@stage_main
def main(params: str, out: str, metrics: str) -> None:
    cfg = load_section(SeedConfig, "seed", params)
    snapshot_hint(cfg.path)
    result = load_seed(cfg, fingerprint(cfg.path))
    for line in result.skipped:
        click.echo(f"skipped {line}", err=True)
    write_jsonl(out, result.records)
    write_json(metrics, result.stats)
    click.echo(f"seed: {result.stats}")


if __name__ == "__main__":
    main()
