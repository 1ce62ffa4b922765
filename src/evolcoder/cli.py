"""The `evolcoder` command line: the user-facing verbs around the DVC pipeline.

Pipeline stages live in `stages/` (thin scripts DVC runs); this CLI holds what a user
runs by hand: executing samples, choosing the evol-stop round, reports, cache stats.
Library imports happen inside commands so `evolcoder --help` stays fast.
"""

from __future__ import annotations

import sys

import click


class _FriendlyGroup(click.Group):
    """Turn the library's validation errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from evolcoder.config import ConfigError
        from evolcoder.jsonio import DataError

        try:
            return super().invoke(ctx)
        except (ConfigError, DataError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


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


# --- generate / evol-stop (issue 5) ---


# --- report / cache (issue 2, 6) ---


@main.group("cache")
def cache_group() -> None:
    """Inspect the shared LLM completion cache (llm.cache)."""


def _cache_path(path: str | None, params: str) -> str:
    if path:
        return path
    from pathlib import Path

    from evolcoder.config import LLMConfig, load_section
    from evolcoder.llm.client import cache_location

    return cache_location(load_section(LLMConfig, "llm", params) if Path(params).is_file() else LLMConfig())


@cache_group.command("stats")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
              help="Cache file (default: $EVOLCODER_CACHE, else llm.cache from --params).")
@click.option("--params", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params.yaml to read llm.cache and llm.price_per_1k from.")
@click.option("--stage", default=None, help="Only this stage (as logged, e.g. round@2).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def cache_stats(cache_path: str | None, params: str, stage: str | None, as_json: bool) -> None:
    """Requests, cache hits, failures, tokens and estimated cost per stage."""
    import json
    from pathlib import Path

    from evolcoder.config import ConfigError, LLMConfig, load_section
    from evolcoder.llm.cache import CompletionCache
    from evolcoder.llm.client import estimate_cost

    path = _cache_path(cache_path, params)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no cache file yet (nothing has called an LLM)")
    price = load_section(LLMConfig, "llm", params).price_per_1k if Path(params).is_file() else None
    with CompletionCache(path) as cache:
        rows = cache.stats(stage)
        stored = cache.count_completions()
    for row in rows:
        if price:
            row["est_cost"] = estimate_cost(row["prompt_tokens"], row["completion_tokens"], price)
    if as_json:
        click.echo(json.dumps({"cache": path, "completions": stored, "stages": rows}, indent=2))
        return
    click.echo(f"{path}: {stored} stored completions")
    header = f"{'stage':<16} {'model':<24} {'requests':>8} {'hits':>8} {'failed':>6} {'prompt_tok':>10} {'compl_tok':>10}"
    click.echo(header + ("  est_cost" if price else ""))
    for r in rows:
        line = (f"{r['stage'] or '-':<16} {r['model'][-24:]:<24} {r['requests']:>8} {r['cache_hits']:>8} "
                f"{r['failures']:>6} {r['prompt_tokens']:>10} {r['completion_tokens']:>10}")
        click.echo(line + (f"  {r['est_cost']:.4f}" if price else ""))


# --- seed export (issue 2) ---


@main.command("export-seed")
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--split", default="train", show_default=True, help="Split of a Hugging Face dataset.")
def export_seed_cmd(source: str, out: str, split: str) -> None:
    """Write SOURCE (hub dataset id, saved dataset dir, JSON or JSONL) as JSONL at OUT.

    Point `seed.path` at OUT so DVC versions the exact seed data, e.g.
    `evolcoder export-seed sahil280114/codealpaca data/seed/codealpaca20k.jsonl`.
    """
    from evolcoder.jsonio import write_jsonl
    from evolcoder.seed import iter_raw

    count = write_jsonl(out, (record for _, record in iter_raw(source, split)))
    click.echo(f"wrote {count} records to {out}")


# --- report (issue 6) ---


@main.command("report")
@click.option("--metrics-dir", default="metrics", show_default=True, type=click.Path(file_okay=False),
              help="Directory holding the stages' metrics files.")
@click.option("--out", default="metrics/report.md", show_default=True, type=click.Path(dir_okay=False),
              help="Markdown report to write.")
@click.option("--html/--no-html", default=True, show_default=True,
              help="Also render `dvc plots show` HTML next to the report.")
def report_cmd(metrics_dir: str, out: str, html: bool) -> None:
    """Summarise a run: rounds, eliminations, tokens and cost, training, pass@k, evol-stop."""
    import subprocess
    from pathlib import Path

    from evolcoder.jsonio import atomic_open
    from evolcoder.report import build_report

    text = build_report(metrics_dir)
    with atomic_open(out) as handle:
        handle.write(text)
    click.echo(f"wrote {out}")
    if html:
        plots_dir = Path(out).parent / "plots"
        proc = subprocess.run(["dvc", "plots", "show", "--out", str(plots_dir)], capture_output=True, text=True)
        if proc.returncode == 0:
            click.echo(f"wrote {plots_dir}/index.html")
        else:
            click.echo(f"warning: dvc plots show failed: {proc.stderr.strip()[:300]}", err=True)


if __name__ == "__main__":
    main()
