"""The client every stage talks to: cache first, then a bounded, retrying provider call.

Concurrency is a streaming pool: each `complete()` call waits on a semaphore of
`llm.concurrency`, so a new request starts the moment any in-flight one finishes (no
batch-and-wait stalls behind the slowest request). Identical requests in flight at once
are coalesced, so even a single run never pays twice for the same content.

Retries live here, not in the provider SDK, so they are counted and logged: exponential
backoff with jitter, or the server's `Retry-After` when it gives one, up to
`llm.max_attempts` attempts on `TransientError`. A request that still fails raises
`RequestFailed` (transient: a re-run retries it; permanent: the endpoint rejected it).
What would fail every request alike stops the stage instead: a `ConfigError` (rejected
key, unknown model, wrong route), and `EndpointDown` when the endpoint refuses
connections before answering anything, or when `llm.max_consecutive_failures` requests in
a row failed (a circuit breaker, so an outage costs seconds, not hours of retries).

Rate limits are paced, not retried into (`evolcoder.llm.ratelimit`): before each attempt
the client waits for a slot in an adaptive concurrency window and for the request and
token buckets that `llm.rpm` / `llm.tpm` and the provider's `x-ratelimit-*` headers set.
A rate-limit 429 halves the window and empties the bucket; the retry then waits for the
bucket rather than for an exponential backoff. Time spent waiting is logged per call.

Only real answers are cached: an empty completion is never stored, so a glitch is
retried on the next run rather than served from the cache for good.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.config import LLMConfig
from evolcoder.errors import BudgetExhausted, ConfigError, LLMError
from evolcoder.llm.base import (TRANSPORT_CAUSES, ChatRequest, Completion, EndpointDown, PermanentError, Provider,
                                RequestFailed, TransientError)
from evolcoder.llm.budget import Budget
from evolcoder.llm.cache import CallLog, CompletionCache
from evolcoder.llm.defer import Deferrals
from evolcoder.llm.pricing import PRICE_TABLE_DATE, PRICES_PER_1M
from evolcoder.llm.ratelimit import Pacer

__all__ = ["BudgetExhausted", "CallResult", "EndpointDown", "LLMClient", "LLMError", "RequestFailed",
           "estimate_cost", "make_client", "price_for"]

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
                 price_per_1k: dict[str, float] | None = None, backoff_s: float = 1.0,
                 max_consecutive_failures: int = 10, pacer: Pacer | None = None) -> None:
        self.provider = provider
        self.cache = cache
        self.stage = stage
        self.max_attempts = max_attempts
        self.max_calls = max_calls
        self.price_per_1k = price_per_1k
        self.backoff_s = backoff_s
        self.max_consecutive_failures = max_consecutive_failures
        self.pacer = pacer or Pacer(concurrency)
        self._window = self.pacer.window
        if hasattr(provider, "observe_headers"):  # every answer's x-ratelimit-* headers feed the buckets
            provider.observe_headers = self.pacer.observe  # type: ignore[attr-defined]
        self._inflight: dict[str, asyncio.Future[CallResult]] = {}
        self._jitter = random.Random()
        self._opened = time.time()
        self._answered = 0  # provider answers in this process: proof that the endpoint works
        self._failed_in_a_row = 0
        self._down: EndpointDown | None = None
        self._usage: dict[str, Any] = {"requests": 0, "cache_hits": 0, "prompt_tokens": 0,
                                       "completion_tokens": 0, "failures": 0, "retries": 0}
        self._causes: dict[str, Counter[str]] = {"failures": Counter(), "retries": Counter()}
        self.budget: Budget | None = None  # llm.budget_usd: reserve the worst case before each call
        self.deferring: Deferrals | None = None  # batch mode: park misses instead of calling

    @property
    def endpoint(self) -> str:
        return str(getattr(self.provider, "endpoint", None) or f"{self.provider.name}:{self.provider.model}")

    async def complete(self, request: ChatRequest) -> CallResult:
        """The completion for `request`: from the cache if ever paid for, else from the provider."""
        start = time.perf_counter()
        key = request.cache_key(self.provider.name, self.provider.model)
        hit = self.cache.get(key)
        if hit is not None:
            return self._hit(key, hit, start)
        if self.deferring is not None:
            raise self.deferring.defer(key, request)
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
        await self._window.acquire()
        try:
            began = time.perf_counter()  # request latency: from here, not from waiting for a slot
            hit = self.cache.get(key)  # another process may have paid while we queued
            if hit is not None:
                return self._hit(key, hit, start)
            if self._down is not None:
                raise EndpointDown(str(self._down))
            if self.max_calls and self._usage["requests"] >= self.max_calls:
                raise BudgetExhausted(
                    f"llm.max_calls={self.max_calls} paid calls reached in stage {self.stage or '?'}; "
                    "completed requests are cached, re-run with a higher llm.max_calls to continue")
            reserved = self.budget.reserve([request]) if self.budget is not None else 0.0
            self._usage["requests"] += 1
            try:
                completion, attempts, retries, waited = await self._attempts(key, request, began)
            except BaseException:
                if self.budget is not None:
                    self.budget.release(reserved)
                raise
            if self.budget is not None:
                self.budget.settle(reserved, [completion])
        finally:
            self._window.release()
        latency = time.perf_counter() - began
        self._answered += 1
        self._failed_in_a_row = 0
        self.pacer.succeeded()
        self._usage["prompt_tokens"] += completion.prompt_tokens
        self._usage["completion_tokens"] += completion.completion_tokens
        await self.cache.put_soon(key, self.provider.name, self.provider.model, request, completion,
                                  CallLog(self.stage, self.provider.name, self.provider.model, key, False,
                                          completion.prompt_tokens, completion.completion_tokens, latency,
                                          attempts, retries=_causes_json(retries), wait_s=waited))
        return CallResult(completion.text, completion.prompt_tokens, completion.completion_tokens,
                          False, latency, completion.finish_reason)

    async def _attempts(self, key: str, request: ChatRequest,
                        began: float) -> tuple[Completion, int, Counter[str], float]:
        """Call the provider until it answers, retrying transient failures; raise on giving up.

        Each attempt first waits for the rate buckets (the seconds are returned, for the log).
        """
        retries: Counter[str] = Counter()
        attempts = 0
        waited = 0.0
        pacer = self.pacer
        while True:
            attempts += 1
            if pacer.paced:
                waited += await pacer.ready(request.messages, request.max_tokens)
            epoch = self._window.epoch
            try:
                return await self.provider.complete(request), attempts, retries, waited
            except TransientError as exc:
                if exc.unreachable and not self._answered and self.max_consecutive_failures:
                    raise self._failed(key, began, attempts, retries, exc.cause, exc, self._trip(
                        f"{exc}. Nothing has been answered by this endpoint in this run, so the stage stops "
                        "instead of retrying every request"))
                if self._down is not None or attempts >= self.max_attempts:
                    raise self._gave_up(key, began, attempts, retries, exc)
                retries[exc.cause] += 1
                self._usage["retries"] += 1
                self._causes["retries"][exc.cause] += 1
                if exc.cause == "rate_limit":
                    pacer.refused(epoch, exc.headers, exc.retry_after)
                    if pacer.paced:  # the bucket now knows when the next request may go
                        continue
                await asyncio.sleep(self._delay(attempts, exc.retry_after))
            except asyncio.CancelledError:
                raise
            except (ConfigError, EndpointDown) as exc:  # wrong key, model or URL: every request would fail
                raise self._failed(key, began, attempts, retries, "config", exc, exc)
            except PermanentError as exc:
                raise self._failed(key, began, attempts, retries, exc.cause, exc, self._count_failure(
                    exc, RequestFailed(str(exc), cause=exc.cause, permanent=True)))
            except Exception as exc:  # a provider bug or an unexpected SDK error: this request only
                raise self._failed(key, began, attempts, retries, "error", exc, self._count_failure(
                    exc, RequestFailed(f"{type(exc).__name__}: {exc}", cause="error", permanent=True)))

    def _gave_up(self, key: str, began: float, attempts: int, retries: Counter[str],
                 exc: TransientError) -> BaseException:
        if self._down is not None:
            return self._failed(key, began, attempts, retries, exc.cause, exc, EndpointDown(str(self._down)))
        failure = RequestFailed(f"gave up after {attempts} attempts: {exc}", cause=exc.cause, permanent=False)
        if self.max_consecutive_failures and not self._answered and exc.cause in TRANSPORT_CAUSES:
            # the first request to finish failed in transport: no sign at all that the endpoint works
            failure = self._trip(f"{failure}, and nothing has been answered by {self.endpoint} in this run")
        return self._failed(key, began, attempts, retries, exc.cause, exc, self._count_failure(exc, failure))

    def _count_failure(self, exc: BaseException, failure: BaseException) -> BaseException:
        """The circuit breaker: too many requests failing in a row means the endpoint is down."""
        self._failed_in_a_row += 1
        limit = self.max_consecutive_failures
        if isinstance(failure, RequestFailed) and limit and self._failed_in_a_row >= limit:
            return self._trip(f"{self._failed_in_a_row} requests in a row to {self.endpoint} failed "
                              f"(llm.max_consecutive_failures={limit}); last: {exc}")
        return failure

    def _trip(self, message: str) -> EndpointDown:
        if self._down is None:
            self._down = EndpointDown(message)
        return EndpointDown(str(self._down))

    def _failed(self, key: str, began: float, attempts: int, retries: Counter[str], cause: str,
                exc: BaseException, raised: BaseException) -> BaseException:
        """Log a failed request (with its cause) and hand back what the caller should raise."""
        self._usage["failures"] += 1
        self._causes["failures"][cause] += 1
        self.cache.log(CallLog(self.stage, self.provider.name, self.provider.model, key, False,
                               latency_s=time.perf_counter() - began, attempts=attempts,
                               error=f"{type(exc).__name__}: {exc}"[:2000], cause=cause,
                               retries=_causes_json(retries)))
        if raised is not exc:
            raised.__cause__ = exc
        return raised

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Server's Retry-After if given (capped), else base * 2^(attempt-1); both jittered up to 25%."""
        base = min(retry_after, MAX_RETRY_AFTER_S) if retry_after is not None else min(
            MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
        return base * (1.0 + 0.25 * self._jitter.random())

    def usage(self) -> dict[str, Any]:
        """This client's totals, failures and retries by cause; `est_cost` when `llm.price_per_1k` is set."""
        out: dict[str, Any] = dict(self._usage)
        out["failures_by_cause"] = dict(sorted(self._causes["failures"].items()))
        out["retries_by_cause"] = dict(sorted(self._causes["retries"].items()))
        out.update(getattr(self.provider, "info", dict)())  # e.g. the evolver's resolved dtype
        if self.pacer.adaptive or self.pacer.paced or self.pacer.refusals:
            out.update(self.pacer.info())
        if self.price_per_1k:
            out["est_cost"] = estimate_cost(out["prompt_tokens"], out["completion_tokens"], self.price_per_1k)
        return out

    async def aclose(self) -> None:
        self.cache.log_run(self.stage, self._opened, time.time(), self._usage["requests"],
                           self._usage["cache_hits"], self._usage["failures"])
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()
        self.cache.close()

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _causes_json(causes: Counter[str]) -> str | None:
    return json.dumps(dict(sorted(causes.items()))) if causes else None


# List prices in USD per 1k tokens (prompt, completion) of well-known hosted models, for an
# estimate when llm.price_per_1k is unset: the one dated table in pricing.py, per 1k tokens.
LIST_PRICES_PER_1K: dict[str, tuple[float, float]] = {
    name: (round(prompt / 1000, 9), round(completion / 1000, 9)) for name, (prompt, completion) in PRICES_PER_1M.items()}


def price_for(model: str, configured: dict[str, float] | None) -> tuple[dict[str, float] | None, bool]:
    """(prices per 1k tokens, whether they come from the built-in list rather than params)."""
    if configured:
        return configured, False
    name = model.rsplit("/", 1)[-1].lower()
    matches = [k for k in LIST_PRICES_PER_1K if name == k or name.startswith(k + "-")]
    if not matches:
        return None, False
    prompt, completion = LIST_PRICES_PER_1K[max(matches, key=len)]
    return {"prompt": prompt, "completion": completion}, True


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
    """The backend named by `evolver.provider` (imported lazily: torch is slow to import).

    `model_path` (a materialised model directory) replaces `evolver.model` for the in-process
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
    pacer = Pacer(cfg.concurrency, rpm=cfg.rpm, tpm=cfg.tpm, adaptive=backend.name.startswith("openai"))
    client = LLMClient(backend, cache, concurrency=cfg.concurrency, max_attempts=cfg.max_attempts,
                       max_calls=cfg.max_calls, stage=stage, price_per_1k=cfg.price_per_1k,
                       backoff_s=cfg.backoff_s, max_consecutive_failures=cfg.max_consecutive_failures, pacer=pacer)
    try:
        client.budget = Budget.from_config(cfg, stage)
    except BaseException:
        cache.close()
        raise
    return client
