"""DVC stages `eval_base`, `eval` and `dev`: generate, execute in the sandbox, write pass@k.

One script, three stages: `--section eval` scores the test benchmarks, `--section dev` the
external dev set that decides evol-stop; `--role base` scores the base model (prompted
with `generate.base_mode`) so a pipeline run reports base -> fine-tuned side by side.
Everything that can be checked (params, benchmark names, model path) is checked before
the model is loaded, and the output directory appears complete or not at all. Finished
generations are journaled under `.evolcoder/journal/` (beside the completion cache) as they
finish, so a killed stage re-run generates only what is missing; the journals are removed
once the outputs are complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import click
from _common import stage_main

from evolcoder.config import Params, to_dict
from evolcoder.jsonio import write_json, write_jsonl



def _summary(entry: dict) -> str:
    """pass@k with its 95 % interval and the errata count: the per-task lists stay in the metrics file."""
    ci = entry.get("ci95", {})
    parts = [f"{k} {v:.4f}" + (f" [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if k in ci else "")
             for k, v in entry.items() if k.startswith("pass@")]
    errata = f"; {len(entry['errata'])} errata" if entry.get("errata") else ""
    return ", ".join(parts) + f" over {entry.get('n_tasks')} tasks x {entry.get('n_per_task')}" + errata

@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file.")
@click.option("--section", type=click.Choice(["eval", "dev"]), required=True,
              help="Params section listing the benchmarks (`eval`: test sets, `dev`: the dev set).")
@click.option("--role", type=click.Choice(["finetuned", "base"]), default="finetuned", show_default=True,
              help="`base` prompts with generate.base_mode instead of generate.mode.")
@click.option("--model", required=True, help="Model directory to evaluate (or the name at generate.base_url).")
@click.option("--base-model", default=None, help="The base model directory, recorded in the metrics.")
@click.option("--out-dir", required=True, help="Directory for samples and execution results.")
@click.option("--metrics", required=True, help="Metrics JSON to write (pass@k + provenance).")
@stage_main
def main(params: str, section: str, role: str, model: str, base_model: str | None, out_dir: str,
         metrics: str) -> None:
    every = Params.load(params)  # the whole file, validated once; llm: cache location and retry policy only
    gen_cfg, box, cfg, llm_cfg = every.generate, every.sandbox, getattr(every, section), every.llm_config()
    mode, stage = (gen_cfg.base_mode, "eval_base") if role == "base" else (gen_cfg.mode, section)
    started = time.perf_counter()

    from evolcoder.eval.execute import evaluate_samples
    from evolcoder.eval.generate import (check_model, decoding_settings, generate_samples, make_backend,
                                         model_provenance, verdict_provenance)
    from evolcoder.eval.problems import load_benchmark
    from evolcoder.eval.sandbox import require_containment
    from evolcoder.llm.client import cache_location

    benchmarks = [load_benchmark(name, cfg.data_dir) for name in cfg.benchmarks]
    require_containment(box.unsafe_rlimits_only)  # refuse before generating, not after
    check_model(model, gen_cfg.backend, local=True)
    cache = cache_location(llm_cfg)
    journal_dir = Path(cache).parent / "journal"
    backend = make_backend(gen_cfg, model, progress=True, llm=llm_cfg, cache_path=cache, stage=stage)

    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scores: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    journals: list[Path] = []
    for benchmark in benchmarks:
        problems = benchmark.problems[:cfg.limit] if cfg.limit else benchmark.problems
        samples, stats = generate_samples(problems, backend, gen_cfg, mode, journal_dir=journal_dir,
                                          label=f"{stage}-{benchmark.name}")
        journals.append(stats.pop("journal"))
        write_jsonl(tmp / f"{benchmark.name}.samples.jsonl", samples)
        report = evaluate_samples(benchmark, samples, workers=box.workers or None, timeout=cfg.timeout_s,
                                  ks=tuple(cfg.ks), unsafe_rlimits_only=box.unsafe_rlimits_only,
                                  progress=True)
        write_jsonl(tmp / f"{benchmark.name}.results.jsonl", report.results)
        scores.update(benchmark_scores(benchmark.name, report, len(problems), gen_cfg.n))
        datasets[benchmark.name] = {"name": benchmark.name, "version": benchmark.version,
                                    "sha256": benchmark.sha256, "n_tasks_total": len(benchmark.problems),
                                    "limit": cfg.limit}
        runs[benchmark.name] = {**stats, "execution_s": round(report.wall_time_s, 3),
                                "warnings": report.warnings[:20]}
        for name in (n for n in scores if n == benchmark.name or n.startswith(f"{benchmark.name}/")):
            click.echo(f"{section}/{role}: {name}: {_summary(scores[name])} "
                       f"({stats['generated_tokens']} tokens in {stats['generation_s']} s)", err=True)
    result = {**scores, "provenance": {
        **verdict_provenance(gen_cfg, mode, backend, cfg.timeout_s),
        "role": role, "model": model_provenance(model), "base_model": base_model,
        "decoding": decoding_settings(gen_cfg, mode, backend.name, getattr(backend, "dtype", None)), "datasets": datasets, "runs": runs,
        "params": {"generate": to_dict(gen_cfg), section: to_dict(cfg)},
        "wall_s": round(time.perf_counter() - started, 3)}}
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    write_json(metrics, result)
    for journal in journals:
        journal.unlink(missing_ok=True)


def benchmark_scores(name: str, report: Any, n_tasks: int, n_per_task: int) -> dict[str, Any]:
    """One benchmark's metrics entries: pass@k with 95 % intervals, per-task pass@1 (for
    evol-stop's paired comparison), the errata; an EvalPlus benchmark also gets its base-test
    scores from the same run as `<name>/base` (HumanEval next to HumanEval+)."""
    scores = report.scores()
    base = scores.pop("base", None)
    common = {"n_tasks": n_tasks, "n_per_task": n_per_task}
    entry = {**scores, **common, "task_ids": list(report.per_task),
             "per_task_pass@1": [round(t.get("pass@1", 0.0), 6) for t in report.per_task.values()]}
    out = {name: entry}
    if base is not None:
        out[f"{name}/base"] = {**base, **common, "tests": "base inputs only, judged in the same run"}
    return out


if __name__ == "__main__":
    main()
