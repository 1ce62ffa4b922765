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
def params_cmd(section: str | None) -> None:
    """Describe every params.yaml section and key, with defaults (or only SECTION)."""
    from evolcoder.config import SECTIONS, describe

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

    return load_section(LLMConfig, "llm", params).cache if Path(params).is_file() else LLMConfig().cache


@cache_group.command("stats")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
              help="Cache file (default: llm.cache from --params).")
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


if __name__ == "__main__":
    main()
