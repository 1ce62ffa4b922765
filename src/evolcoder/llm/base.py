"""The one interface every LLM backend implements, and the value types it exchanges.

A provider only turns one chat request into one completion. Caching, concurrency,
retries' bookkeeping, call budgets and usage accounting live in the client, so a new
backend is a single async method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from evolcoder.errors import EndpointDown, LLMError  # noqa: F401  (EndpointDown re-exported for the client)
from evolcoder.util.hashing import json_sha256

# The in-process provider's plain completion prompt format (hf_provider.plain_prompt and its
# stop markers): bump on any change. Round plans record it, so a change re-runs the rounds.
PLAIN_FORMAT = "plain-v2"


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request; immutable so it can be hashed into a cache key."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 2048
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop strings (raw completions); part of the key only when set

    @classmethod
    def user(cls, content: str, **settings: object) -> "ChatRequest":
        return cls(messages=(("user", content),), **settings)  # type: ignore[arg-type]

    def cache_key(self, provider: str, model: str) -> str:
        """Content address of this request: provider, model, messages, sampling settings, seed."""
        payload = {
            "provider": provider,
            "model": model,
            "messages": [list(m) for m in self.messages],
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.stop:  # keys of requests without stop strings stay what they always were
            payload["stop"] = list(self.stop)
        return json_sha256(payload)


@dataclass(frozen=True)
class Completion:
    """What a provider returns for one request."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class Provider(Protocol):
    """An LLM backend. `name` and `model` go into the cache key."""

    name: str
    model: str

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request; raise on failure (the client decides about retries)."""
        ...


# Why a request failed; `TRANSPORT_CAUSES` say nothing about the request, only the endpoint.
TRANSPORT_CAUSES = frozenset({"refused", "dns", "connection", "timeout", "server_error"})


class TransientError(RuntimeError):
    """A failure worth retrying (rate limit, 5xx, timeout, dropped connection, garbled or empty body).

    Providers translate their own exception types into this one so the client's retry
    policy is backend-neutral; `retry_after` carries the server's requested delay and
    `cause` one word for `cache stats` (rate_limit, server_error, timeout, connection,
    refused, dns, malformed, empty). `unreachable` marks a refused connection or an
    unresolvable host: before anything was answered, the client treats it as a dead endpoint.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, cause: str = "server_error",
                 unreachable: bool = False, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.cause = cause
        self.unreachable = unreachable
        self.headers = headers  # the refusal's HTTP headers (x-ratelimit-*), for the pacer


class PermanentError(RuntimeError):
    """The endpoint rejected this one request for good (400, 413, 422): retrying cannot help."""

    def __init__(self, message: str, cause: str = "invalid_request") -> None:
        super().__init__(message)
        self.cause = cause


class RequestFailed(LLMError):
    """One request failed for good; `permanent` says whether a re-run could succeed."""

    def __init__(self, message: str, *, cause: str, permanent: bool) -> None:
        super().__init__(message)
        self.cause = cause
        self.permanent = permanent
