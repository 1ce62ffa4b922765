"""Shared plumbing for stage scripts: clear errors, non-zero exits, nothing half-written."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click


def stage_main(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report ConfigError / DataError / BudgetExhausted as one line and exit non-zero."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from evolcoder.config import ConfigError
        from evolcoder.jsonio import DataError

        try:
            return func(*args, **kwargs)
        except (ConfigError, DataError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except Exception as exc:  # the LLM budget stop is expected, not a crash
            if type(exc).__name__ == "BudgetExhausted":
                click.echo(f"stopped: {exc}", err=True)
                sys.exit(3)
            raise

    return wrapper
