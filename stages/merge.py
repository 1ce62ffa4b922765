"""DVC stage `merge`: seed + active rounds' survivors -> train.jsonl (params section `merge`)."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import Params, to_dict
from evolcoder.contracts import EvolMetrics, MergeMetrics, evol_plot_rows, round_dir
from evolcoder.evolution.outputs import read_round
from evolcoder.evolution.plan import read_manifest
from evolcoder.jsonio import file_sha256, read_jsonl, write_json, write_jsonl
from evolcoder.dataset.card import render_card, write_card
from evolcoder.dataset.merge import load_index, merge


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file to read `merge` from.")
@click.option("--seed", "seed_path", required=True, help="Seed JSONL from the `seed` stage.")
@click.option("--plan-dir", required=True, help="The `plan` stage's output; its manifest names the active rounds.")
@click.option("--rounds-dir", required=True, help="Parent of the rounds' output directories r1, r2, ...")
@click.option("--out", required=True, help="Training JSONL to write.")
@click.option("--dropped", required=True, help="JSONL listing every dropped record and why.")
@click.option("--metrics", required=True, help="Merge counts (dedup/decontamination by reason).")
@click.option("--card", required=True, help="Dataset card to write beside the training set (README.md).")
@click.option("--evol-metrics", required=True, help="Per-round evolution statistics (metrics/evol.json).")
@click.option("--evol-plot", required=True, help="Per-round rows for `dvc plots` (instruction length by round).")
@stage_main
def main(params: str, seed_path: str, plan_dir: str, rounds_dir: str, out: str, dropped: str, metrics: str,
         card: str, evol_metrics: str, evol_plot: str) -> None:
    every = Params.load(params)
    cfg = every.merge
    seed = [record for _, record in read_jsonl(seed_path)]
    rounds, stats = [], []
    for round_no in read_manifest(plan_dir):
        kept, round_stats = read_round(round_dir(rounds_dir, round_no), round_no)
        rounds.append(kept)
        stats.append(round_stats)
    result = merge(seed, rounds, load_index(cfg), cfg)
    write_jsonl(out, result.records)
    write_jsonl(dropped, result.dropped)
    merge_metrics = {**result.metrics, "train_sha256": file_sha256(out)}
    MergeMetrics.parse(merge_metrics, metrics).write(metrics)
    write_card(card, render_card(merge_metrics, to_dict(cfg), every.seed.path, len(rounds)))
    EvolMetrics.of(stats).write(evol_metrics)
    write_json(evol_plot, evol_plot_rows(seed, stats))
    click.echo(f"merge: {result.metrics['records_out']} training records "
               f"({result.metrics['dropped_total']} dropped: {result.metrics['dropped']})")


if __name__ == "__main__":
    main()
