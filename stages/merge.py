"""DVC stage `merge`: seed + active rounds' survivors -> train.jsonl (params section `merge`)."""

from __future__ import annotations

from pathlib import Path

import click
from _common import stage_main

from evolcoder.config import BaseModelConfig, EvalConfig, MergeConfig, SeedConfig, load_section, to_dict
from evolcoder.evolution.outputs import RoundRecords
from evolcoder.evolution.plan import read_manifest
from evolcoder.jsonio import file_sha256, write_json
from evolcoder.dataset.card import render_card, write_card
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
    cfg = load_section(MergeConfig, "merge", params)
    seed = JsonlSource(seed_path)
    rounds = [RoundRecords(Path(rounds_dir) / f"r{n}", n) for n in read_manifest(plan_dir)]
    stats = [r.stats for r in rounds]
    count_tokens = None
    if cfg.match is not None:
        from evolcoder.dataset.control import source_tokenizer, token_counter

        tokenizer_source = load_section(BaseModelConfig, "base_model", params).source
        count_tokens = token_counter(source_tokenizer(tokenizer_source))
    result = merge_to_files([seed, *rounds], load_index(cfg), cfg, out, dropped, count_tokens)
    if cfg.match is not None:
        result.metrics["control"]["tokenizer"] = tokenizer_source
    merge_metrics = {**result.metrics, "train_sha256": file_sha256(out)}
    write_json(metrics, merge_metrics)
    seed_cfg = load_section(SeedConfig, "seed", params)
    write_card(card, render_card(merge_metrics, to_dict(cfg), seed_cfg.path, len(rounds)))
    evaluated = load_section(EvalConfig, "eval", params).benchmarks
    similarity = test_similarity({0: seed, **{s["round"]: r for s, r in zip(stats, rounds)}},
                                 [load_benchmark(name, cfg.data_dir) for name in evaluated])
    write_json(evol_metrics, {"rounds": len(stats), "per_round": {f"r{s['round']}": s for s in stats},
                              "test_similarity": similarity})
    n_seed, seed_words = 0, 0
    for record in seed:
        n_seed += 1
        seed_words += len(record["instruction"].split())
    # evol.verify's figures, in every row once any round has them (dvc plots fails on a missing key)
    verify = [k for k in ("verified_fraction", "mutant_kill_rate") if any(k in s for s in stats)]
    rows = [{"round": 0, "mean_instruction_words": round(seed_words / max(1, n_seed), 2), "kept": n_seed,
             **dict.fromkeys(verify)}]
    rows += [{"round": s["round"], "mean_instruction_words": s["mean_instruction_words"], "kept": s["kept"],
              **{k: s.get(k) for k in verify}} for s in stats]
    for row in rows:  # the nearest-record similarity of the evaluated benchmarks' problems (similarity.py)
        row["test_similarity"] = similarity["rounds"][f"r{row['round']}"]["mean"]
    write_json(evol_plot, rows)
    click.echo(f"merge: {result.metrics['records_out']} training records "
               f"({result.metrics['dropped_total']} dropped: {result.metrics['dropped']})")


if __name__ == "__main__":
    main()
