"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server) via `openai`.

The SDK's own retries are switched off (`max_retries=0`): the client retries, counts and
logs every attempt itself, so this module only translates the SDK's exceptions into
`TransientError` (worth retrying, with the server's Retry-After) or lets others propagate
as permanent failures.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any

import openai
from openai import AsyncOpenAI

from evolcoder.config import LLMConfig

from evolcoder.errors import ConfigError
from evolcoder.llm.base import ChatRequest, Completion, TransientError

RETRYABLE_STATUS = {408, 409, 425, 429}


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def api_key_for(base_url: str | None) -> str:
    """The key from OPENAI_API_KEY only; local servers get a dummy, OpenAI itself fails early."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    if base_url:
        return "EMPTY"
    raise ConfigError("OPENAI_API_KEY is not set: export it to call OpenAI, or set llm.base_url "
                      "to a local OpenAI-compatible server (vLLM, Ollama, llama.cpp) that needs no key")


def _http_client(timeout_s: float, concurrency: int) -> Any:
    """The SDK's aiohttp transport when `aiohttp` is installed, else None (its httpx default).

    aiohttp's C parser and single-write requests cost about a quarter less CPU per call
    than the default transport, which is what bounds throughput at high concurrency.
    """
    factory = getattr(openai, "DefaultAioHttpClient", None)
    limits_type = type(getattr(openai, "DEFAULT_CONNECTION_LIMITS", None))
    if factory is None or limits_type is type(None):
        return None
    try:
        import aiohttp  # noqa: F401

        limits = limits_type(max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency))
        return factory(timeout=timeout_s, limits=limits)
    except (ImportError, RuntimeError, TypeError):
        return None


def _aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return hasattr(openai, "DefaultAioHttpClient")


class OpenAIProvider:
    """One `AsyncOpenAI` client with a connection pool sized for `llm.concurrency`."""

    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 120.0,
                 concurrency: int = 8, transport: str = "auto") -> None:
        self.model = model
        self._base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._api_key = api_key_for(self._base_url)  # fail before any work, not at the first miss
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self.transport = "aiohttp" if transport == "auto" and _aiohttp_available() else "httpx"
        self._client: AsyncOpenAI | None = None

    @property
    def client(self) -> AsyncOpenAI:
        """Built on the first paid call: a fully cached re-run never sets up HTTP or TLS."""
        if self._client is None:
            http = _http_client(self._timeout_s, self._concurrency) if self.transport == "aiohttp" else None
            self.transport = "aiohttp" if http is not None else "httpx"
            self._client = AsyncOpenAI(base_url=self._base_url, api_key=self._api_key, timeout=self._timeout_s,
                                       max_retries=0, http_client=http)
        return self._client

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> "OpenAIProvider":
        return cls(cfg.model, base_url=cfg.base_url, timeout_s=cfg.timeout_s, concurrency=cfg.concurrency)

    async def complete(self, request: ChatRequest) -> Completion:
        # `post` with a plain body and `cast_to=object` are the SDK's documented ways to send a
        # request as-is and get the JSON back untyped. They skip `create()`'s recursive
        # TypedDict transform and the typed `ChatCompletion` construction (together about a
        # third of per-call CPU, the limit at high concurrency) while keeping the SDK's HTTP,
        # auth and error types. Only four fields are read, in `completion_from_json`.
        body = {
            "model": self.model,
            "messages": [{"role": role, "content": content} for role, content in request.messages],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        try:
            response = await self.client.post("/chat/completions", body=body, cast_to=object)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(f"{self._where()} rejected the API key from OPENAI_API_KEY "
                              f"(HTTP {exc.status_code}): {exc.message}") from exc
        except openai.NotFoundError as exc:
            raise ConfigError(f"params: llm.model: {self.model!r} or llm.base_url {self._where()} not found "
                              f"(HTTP 404; does base_url end in /v1?): {exc.message}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500:
                raise TransientError(f"HTTP {exc.status_code}: {exc.message}",
                                     parse_retry_after(exc.response.headers)) from exc
            raise
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            raise TransientError(f"malformed response: {exc}") from exc
        return completion_from_json(response)

    def _where(self) -> str:
        return self._base_url or "api.openai.com"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def completion_from_json(data: Any) -> Completion:
    """Text, token usage and finish reason of a chat completion body; anything else is garbled."""
    try:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "",
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          finish_reason=choice.get("finish_reason"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientError(f"malformed response: no choices in {str(data)[:200]!r}") from exc
