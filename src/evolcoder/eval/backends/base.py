"""The contract every generation backend keeps: prompts in, `n` generations per prompt out.

Why a contract: prompting and post-processing are not backend business, so a model scores
the same whether it runs in process or behind a server; a backend only turns `Request`s
into `Generation`s, skipping the ones already `done` (journaled) and handing each finished
batch to `on_batch` so it can be journaled at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evolcoder.config import GenerateConfig


@dataclass(frozen=True)
class Request:
    """One prompt: the stop strings a server may apply, and the local early-stop test."""

    prompt: str
    stops: tuple[str, ...] = ()
    final: Callable[[str], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int | None
    finish_reason: str  # "stop" (EOS/stop string), "early" (code complete), "length"


Done = Callable[[int], bool]
OnBatch = Callable[[list[tuple[int, list[Generation]]]], None]


class Backend(Protocol):
    name: str

    def identity(self, cfg: GenerateConfig) -> dict[str, Any]:
        """What of this backend decides the samples (model weights, dtype, batch layout)."""
        ...

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig, *, done: Done | None = None,
                 on_batch: OnBatch | None = None) -> list[list[Generation]]:
        """`cfg.n` generations for each request, in request order; `[]` for a request that is
        `done` already (skipped); each finished batch of (request index, generations) goes
        to `on_batch` as soon as it is finished."""
        ...
