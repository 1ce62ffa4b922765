"""DVC stage `finetune`: WizardCoder SFT on data/train/train.jsonl (params section `finetune`).

Runs as is on one CPU or GPU, under `accelerate launch` / torchrun, or relaunches itself
under `accelerate launch --config_file <finetune.accelerate_config>` when that is set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
from _common import stage_main

from evolcoder.config import FinetuneConfig, load_section

_LAUNCHED = "EVOLCODER_LAUNCHED"


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `finetune` from.")
@click.option("--train", "train_path", required=True, help="Training JSONL (instruction/input/output).")
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--metrics", required=True, help="Training summary JSON (metrics/train.json).")
@click.option("--live-dir", required=True, help="dvclive directory for the training curves.")
@stage_main
def main(params: str, train_path: str, out: str, metrics: str, live_dir: str) -> None:
    cfg = load_section(FinetuneConfig, "finetune", params)  # fails on bad params before any work
    if cfg.accelerate_config and "WORLD_SIZE" not in os.environ and not os.environ.get(_LAUNCHED):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", cfg.accelerate_config,
               *sys.argv]
        click.echo(f"finetune: relaunching under {' '.join(cmd)}", err=True)
        sys.exit(subprocess.call(cmd, env={**os.environ, _LAUNCHED: "1"}))

    from evolcoder.train.finetune import train

    result = train(cfg, train_path, out, metrics_path=metrics, live_dir=live_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"finetune: {result}")


if __name__ == "__main__":
    main()
