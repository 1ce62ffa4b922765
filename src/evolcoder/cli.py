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


if __name__ == "__main__":
    main()
