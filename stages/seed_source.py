"""DVC stage `seed_source`: fingerprint `seed.path` so `seed` re-runs exactly when its data changed.

`seed.path` may be a file or a hub dataset id, and DVC can only hash files, so this stage
(always run, and cheap: one file hash or one hub metadata request) writes the content's
identity (a sha256, or the hub commit) to a small file the `seed` stage depends on.
"""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import SeedConfig, load_section
from evolcoder.dataset.seed import fingerprint
from evolcoder.jsonio import write_json


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `seed.path` from.")
@click.option("--out", required=True, help="Fingerprint JSON to write.")
@stage_main
def main(params: str, out: str) -> None:
    cfg = load_section(SeedConfig, "seed", params)
    source = fingerprint(cfg.path)
    write_json(out, source)
    click.echo(f"seed source: {source}")


if __name__ == "__main__":
    main()
