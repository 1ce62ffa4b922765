"""DVC stage `base_model`: materialise the base model once (params section `base_model`).

The embedded GGUF is converted to a plain Hugging Face directory here, so later stages
load it in seconds; a local directory or hub id is only referenced (`model_ref.json`).
"""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import BaseModelConfig, build, load_section
from evolcoder.jsonio import write_json
from evolcoder.hf.models import materialize


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `base_model` from.")
@click.option("--source", default=None, help="Override base_model.source (e.g. ${evolver.model} for the evolver).")
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--metrics", default=None, help="Provenance JSON (source, path, sha256, n_params).")
@stage_main
def main(params: str, source: str | None, out: str, metrics: str | None) -> None:
    cfg = (build(BaseModelConfig, {"source": source}, "base_model") if source
           else load_section(BaseModelConfig, "base_model", params))
    info = materialize(cfg.source, out)
    if metrics:
        write_json(metrics, info)
    click.echo(f"base_model: {info}")


if __name__ == "__main__":
    main()
