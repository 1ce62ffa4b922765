"""Shared plumbing for stage scripts: clear errors, non-zero exits, nothing half-written."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from evolcoder.errors import EvolcoderError


def stage_main(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report any EvolcoderError as one line and exit with its code (2 input, 3 budget)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EvolcoderError as exc:
            click.echo(f"{exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper
