"""Deferral: a client that parks its cache misses instead of paying for them one by one.

Batch mode runs a stage's own logic unchanged, as a *pass*: every request the cache
answers is used, every miss is collected here and the caller's item gives up at once
(`Deferred` is an `LLMError`, so the round records the item as failed and moves on). The
collected misses are then bought through the Batch API and written into the cache under
the same keys, and the next pass goes one step further. A pass with no misses is the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evolcoder.errors import LLMError
from evolcoder.llm.base import ChatRequest, RequestFailed


class Deferred(LLMError):
    """This request is not cached yet; it was parked for the next batch."""

    cause = "deferred"
    permanent = False


@dataclass
class Deferrals:
    """The misses of one pass, and the keys whose batch lines failed too often to try again."""

    misses: dict[str, ChatRequest] = field(default_factory=dict)
    given_up: dict[str, str] = field(default_factory=dict)  # key -> the provider's last error

    def defer(self, key: str, request: ChatRequest) -> LLMError:
        """What the client raises for a miss: a failure for given-up keys, else a deferral."""
        if key in self.given_up:
            return RequestFailed(f"batch lines failed for good: {self.given_up[key]}", cause="batch_failed",
                                 permanent=False)
        self.misses.setdefault(key, request)
        return Deferred(f"request {key[:12]} parked for the next batch")
