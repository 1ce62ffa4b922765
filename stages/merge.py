"""DVC stage `merge`: seed + active rounds' survivors -> train.jsonl (params section `merge`)."""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import Params, to_dict
from evolcoder.contracts import EvolMetrics, MergeMetrics, evol_plot_rows, round_dir
from evolcoder.evolution.outputs import RoundRecords
from evolcoder.evolution.plan import read_manifest
from evolcoder.jsonio import file_sha256, write_json
from evolcoder.dataset.card import render_card, write_card
from evolcoder.dataset.control import control_counter
from evolcoder.dataset.merge import JsonlSource, load_index, merge_to_files
from evolcoder.dataset.similarity import test_similarity
from evolcoder.eval.problems import load_benchmark


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
    seed = JsonlSource(seed_path)  # streamed: every input is read from disk, never held whole
    rounds = [RoundRecords(round_dir(rounds_dir, n), n) for n in read_manifest(plan_dir)]
    stats = [r.stats for r in rounds]
    result = merge_to_files([seed, *rounds], load_index(cfg), cfg, out, dropped,
                            control_counter(cfg.match, every.base_model.source))
    merge_metrics = {**result.metrics, "train_sha256": file_sha256(out)}
    MergeMetrics.parse(merge_metrics, metrics).write(metrics)
    write_card(card, render_card(merge_metrics, to_dict(cfg), every.seed.path, len(rounds)))
    similarity = test_similarity({0: seed, **{s.round: r for s, r in zip(stats, rounds)}},
                                 [load_benchmark(name, cfg.data_dir) for name in every.eval.benchmarks])
    EvolMetrics.of(stats, similarity).write(evol_metrics)
    write_json(evol_plot, evol_plot_rows(seed, stats, similarity))
    click.echo(f"merge: {result.metrics['records_out']} training records "
               f"({result.metrics['dropped_total']} dropped: {result.metrics['dropped']})")


if __name__ == "__main__":
    main()
