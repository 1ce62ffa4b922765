"""DVC stage `seed`: validate and sample the seed instructions (params section `seed`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from _common import stage_main

from evolcoder.config import SeedConfig, load_section
from evolcoder.errors import ConfigError
from evolcoder.contracts import SeedMetrics
from evolcoder.jsonio import write_jsonl
from evolcoder.dataset.seed import load_seed


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `seed` from.")
@click.option("--out", required=True, help="Seed JSONL to write.")
@click.option("--metrics", required=True, help="Counts of read/skipped/duplicate/written records.")
@click.option("--source", "source_path", default=None,
              help="Fingerprint from the `seed_source` stage: recorded in the metrics; pins a hub dataset's commit.")
@stage_main
def main(params: str, out: str, metrics: str, source_path: str | None) -> None:
    cfg = load_section(SeedConfig, "seed", params)
    source = json.loads(Path(source_path).read_text(encoding="utf-8")) if source_path else None
    if source is not None and source.get("path") != cfg.path:
        raise ConfigError(f"params: seed.path: is {cfg.path!r} but {source_path} fingerprints "
                          f"{source.get('path')!r}; run the seed_source stage first (dvc repro)")
    result = load_seed(cfg, source)
    for line in result.skipped:
        click.echo(f"skipped {line}", err=True)
    write_jsonl(out, result.records)
    SeedMetrics.parse(result.stats, metrics).write(metrics)
    click.echo(f"seed: {result.stats}")


if __name__ == "__main__":
    main()
