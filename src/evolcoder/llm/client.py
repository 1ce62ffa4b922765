"""The client every stage talks to: cache first, then a bounded, retrying provider call.

Concurrency is a streaming pool: each `complete()` call waits on a semaphore of
`llm.concurrency`, so a new request starts the moment any in-flight one finishes (no
batch-and-wait stalls behind the slowest request). Identical requests in flight at once
are coalesced, so even a single run never pays twice for the same content.

Retries live here, not in the provider SDK, so they are counted and logged: exponential
backoff with jitter, or the server's `Retry-After` when it gives one, up to
`llm.max_attempts` attempts on `TransientError`. Anything else fails the request at once
(`LLMError`), except a `ConfigError` (rejected key, unknown model, wrong URL), which
would fail every request alike and so propagates to stop the stage.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.config import LLMConfig
from evolcoder.errors import BudgetExhausted, ConfigError, LLMError
from evolcoder.llm.base import ChatRequest, Completion, Provider, TransientError
from evolcoder.llm.cache import CallLog, CompletionCache

MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0  # a misconfigured server asking for hours must not hang a stage silently


@dataclass(frozen=True)
class CallResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    latency_s: float
    finish_reason: str | None = None  # "length": cut off at max_tokens


class LLMClient:
    """Cached, bounded, retrying access to one provider for one pipeline stage."""

    def __init__(self, provider: Provider, cache: CompletionCache, *, concurrency: int = 8,
                 max_attempts: int = 6, max_calls: int = 0, stage: str = "",
                 price_per_1k: dict[str, float] | None = None, backoff_s: float = 1.0) -> None:
        self.provider = provider
        self.cache = cache
        self.stage = stage
        self.max_attempts = max_attempts
        self.max_calls = max_calls
        self.price_per_1k = price_per_1k
        self.backoff_s = backoff_s
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Future[CallResult]] = {}
        self._jitter = random.Random()
        self._usage = {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "failures": 0, "retries": 0}

    async def complete(self, request: ChatRequest) -> CallResult:
        """The completion for `request`: from the cache if ever paid for, else from the provider."""
        start = time.perf_counter()
        key = request.cache_key(self.provider.name, self.provider.model)
        hit = self.cache.get(key)
        if hit is not None:
            return self._hit(key, hit, start)
        shared = self._inflight.get(key)
        if shared is not None:
            result = await asyncio.shield(shared)
            return self._hit(key, Completion(result.text, result.prompt_tokens, result.completion_tokens,
                                             result.finish_reason), start)
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._paid(key, request, start)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # mark retrieved: only the waiters (if any) re-raise it
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    def _hit(self, key: str, hit: Completion, start: float) -> CallResult:
        latency = time.perf_counter() - start
        self._usage["cache_hits"] += 1
        self.cache.log(CallLog(self.stage, self.provider.name, self.provider.model, key, True,
                               hit.prompt_tokens, hit.completion_tokens, latency, 0), defer=True)
        return CallResult(hit.text, hit.prompt_tokens, hit.completion_tokens, True, latency, hit.finish_reason)

    async def _paid(self, key: str, request: ChatRequest, start: float) -> CallResult:
        async with self._sem:
            hit = self.cache.get(key)  # another process may have paid while we queued
            if hit is not None:
                return self._hit(key, hit, start)
            if self.max_calls and self._usage["requests"] >= self.max_calls:
                raise BudgetExhausted(
                    f"llm.max_calls={self.max_calls} paid calls reached in stage {self.stage or '?'}; "
                    "completed requests are cached, re-run with a higher llm.max_calls to continue")
            self._usage["requests"] += 1
            attempts = 0
            while True:
                attempts += 1
                try:
                    completion = await self.provider.complete(request)
                    break
                except TransientError as exc:
                    if attempts >= self.max_attempts:
                        self._fail(key, start, attempts, exc)
                        raise LLMError(f"gave up after {attempts} attempts: {exc}") from exc
                    self._usage["retries"] += 1
                    await asyncio.sleep(self._delay(attempts, exc.retry_after))
                except asyncio.CancelledError:
                    raise
                except ConfigError as exc:  # wrong key, model or URL: every request would fail, so stop
                    self._fail(key, start, attempts, exc)
                    raise
                except Exception as exc:  # permanent for this request: bad request, context too long...
                    self._fail(key, start, attempts, exc)
                    raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        latency = time.perf_counter() - start
        self._usage["prompt_tokens"] += completion.prompt_tokens
        self._usage["completion_tokens"] += completion.completion_tokens
        self.cache.put(key, self.provider.name, self.provider.model, request, completion,
                       CallLog(self.stage, self.provider.name, self.provider.model, key, False,
                               completion.prompt_tokens, completion.completion_tokens, latency, attempts))
        return CallResult(completion.text, completion.prompt_tokens, completion.completion_tokens,
                          False, latency, completion.finish_reason)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Server's Retry-After if given (capped), else base * 2^(attempt-1); both jittered up to 25%."""
        base = min(retry_after, MAX_RETRY_AFTER_S) if retry_after is not None else min(
            MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
        return base * (1.0 + 0.25 * self._jitter.random())

    def _fail(self, key: str, start: float, attempts: int, exc: BaseException) -> None:
        self._usage["failures"] += 1
        self.cache.log(CallLog(self.stage, self.provider.name, self.provider.model, key, False,
                               latency_s=time.perf_counter() - start, attempts=attempts,
                               error=f"{type(exc).__name__}: {exc}"[:2000]))

    def usage(self) -> dict[str, Any]:
        """This client's totals; `est_cost` appears when `llm.price_per_1k` is set."""
        out: dict[str, Any] = dict(self._usage)
        out.update(getattr(self.provider, "info", dict)())  # e.g. the evolver's resolved dtype
        if self.price_per_1k:
            out["est_cost"] = estimate_cost(out["prompt_tokens"], out["completion_tokens"], self.price_per_1k)
        return out

    async def aclose(self) -> None:
        self.cache.flush()
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()
        self.cache.close()

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def estimate_cost(prompt_tokens: int, completion_tokens: int, price_per_1k: dict[str, float]) -> float:
    return round(prompt_tokens / 1000 * price_per_1k.get("prompt", 0.0)
                 + completion_tokens / 1000 * price_per_1k.get("completion", 0.0), 6)


def cache_location(cfg: LLMConfig, cwd: str | Path | None = None) -> str:
    """`$EVOLCODER_CACHE` if set, else `llm.cache`.

    `dvc exp run --queue/--temp` runs stages in a copy of the project under
    `<project>/.dvc/tmp/exps/`; a relative `llm.cache` there is anchored at the original
    project, so queued experiments share (and never re-pay) the same completions.
    """
    override = os.environ.get("EVOLCODER_CACHE")
    if override:
        return override
    if Path(cfg.cache).is_absolute():
        return cfg.cache
    here = Path(cwd or os.getcwd()).resolve()
    marker = f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}"
    if marker in f"{here}{os.sep}":
        return str(Path(f"{here}{os.sep}".split(marker, 1)[0]) / cfg.cache)
    return cfg.cache


def make_provider(cfg: LLMConfig, model_path: str | None = None) -> Provider:
    """The backend named by `llm.provider` (imported lazily: torch is slow to import).

    `model_path` (a materialised model directory) replaces `llm.model` for the in-process
    transformers provider; an HTTP endpoint names its model itself, so openai ignores it.
    """
    if cfg.provider == "openai":
        from evolcoder.llm.openai_provider import OpenAIProvider

        return OpenAIProvider.from_config(cfg)
    from evolcoder.llm.hf_provider import HFProvider

    return HFProvider.from_config(cfg, model_path)


def make_client(cfg: LLMConfig, *, stage: str = "", cache_path: str | None = None,
                model_path: str | None = None, provider: Provider | None = None) -> LLMClient:
    """A client for one stage (`stage` labels its rows in the call log)."""
    cache = CompletionCache(Path(cache_path or cache_location(cfg)))
    try:
        backend = provider or make_provider(cfg, model_path)
    except BaseException:
        cache.close()
        raise
    return LLMClient(backend, cache, concurrency=cfg.concurrency, max_attempts=cfg.max_attempts,
                     max_calls=cfg.max_calls, stage=stage, price_per_1k=cfg.price_per_1k,
                     backoff_s=cfg.backoff_s)
