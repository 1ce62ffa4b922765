"""DVC stage `report`: metrics/report.md and its SVG figures from this run's metrics."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.report import write_report


@click.command()
@click.option("--metrics-dir", default="metrics", show_default=True, help="Directory holding the stages' metrics.")
@click.option("--out", required=True, help="Markdown report to write.")
@click.option("--figures", required=True, help="Directory for the SVG figures the report links.")
@stage_main
def main(metrics_dir: str, out: str, figures: str) -> None:
    path, written = write_report(metrics_dir, out, figures)
    click.echo(f"report: wrote {path} and {len(written)} figure(s)")


if __name__ == "__main__":
    main()
