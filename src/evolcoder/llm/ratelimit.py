"""Pacing to a provider's rate limits: request/token buckets fed by its headers, and an AIMD window.

Retrying 429s with backoff is the wrong tool for a rate limit: every refused request costs a
round trip, and a pool of hundreds of requests in flight hammers a key that allows 100 a
second, so most of the run is spent refused and backing off. Instead the client asks a
`Pacer` before each attempt:

- Two buckets (requests, tokens), run as a generic cell rate algorithm: each attempt reserves
  its start time (`tat`, the theoretical arrival time), so hundreds of waiters each sleep once
  to their own slot instead of waking together and racing. The rates come from the optional
  `llm.rpm` / `llm.tpm` caps and from OpenAI's `x-ratelimit-limit-{requests,tokens}` headers
  (per minute), whichever is lower; a header's `x-ratelimit-remaining-*` pulls the bucket
  down to what the server says is left (other processes may share the key). Limits learned
  from headers are used at `HEADROOM` of their value: the server's clock and ours disagree
  by a few milliseconds, and a 429 costs more than the last 2 %.
- A concurrency window that adapts (AIMD): it starts small and doubles per round trip (slow
  start) up to `llm.concurrency`, is halved on a rate-limit refusal (once per window: the
  refusals of requests sent before the cut do not cut again), and grows back by one request
  per window of successes.

With no caps and no rate headers (a local vLLM) the buckets are off and the window stays at
`llm.concurrency`, so nothing is paced that need not be. Time spent waiting for a bucket is
counted per request (`wait_s`), so `cache stats` and the round stats show rate-limit waits
apart from latency and from 429 retries.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADROOM = 0.98  # share of a header-announced limit that is used
BURST_S = 1.0  # our bucket holds this many seconds of its rate: smooth, never a minute's burst at once
SLOW_START = 16  # first window when pacing HTTP requests (doubles per round trip up to llm.concurrency)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds of an OpenAI reset value ("1s", "6m0s", "20ms", "1h2m3.5s", or a bare number)."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class RateHeaders:
    """OpenAI's `x-ratelimit-*` headers of one answer; None where a header is absent or garbled."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests_s: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str] | None) -> "RateHeaders | None":
        if not headers or headers.get("x-ratelimit-limit-requests") is None and \
                headers.get("x-ratelimit-limit-tokens") is None:
            return None
        return cls(_number(headers, "x-ratelimit-limit-requests"), _number(headers, "x-ratelimit-remaining-requests"),
                   parse_duration(headers.get("x-ratelimit-reset-requests")),
                   _number(headers, "x-ratelimit-limit-tokens"), _number(headers, "x-ratelimit-remaining-tokens"),
                   parse_duration(headers.get("x-ratelimit-reset-tokens")))


class Bucket:
    """One rate (units per second) as a generic cell rate algorithm, with a `BURST_S` tolerance."""

    def __init__(self, cap_per_min: float = 0.0) -> None:
        self.cap = cap_per_min / 60.0 if cap_per_min else None
        self.learned: float | None = None  # from headers, already times HEADROOM
        self.tat = 0.0  # when the bucket is full again (monotonic clock)

    @property
    def rate(self) -> float | None:
        rates = [r for r in (self.cap, self.learned) if r]
        return min(rates) if rates else None

    def reserve(self, cost: float, now: float) -> float:
        """Seconds to wait before spending `cost` units; the reservation is made at once."""
        rate = self.rate
        if rate is None:
            return 0.0
        interval = cost / rate
        tolerance = max(0.0, BURST_S - 1.0 / rate)
        tat = max(self.tat, now)
        start = max(now, tat - tolerance)
        self.tat = tat + interval
        return start - now

    def observe(self, limit_per_min: float | None, remaining: float | None, now: float) -> None:
        """What the server says: its per-minute limit and what is left of it right now."""
        if limit_per_min:
            self.learned = limit_per_min / 60.0 * HEADROOM
        rate = self.rate
        if rate is None or remaining is None:
            return
        capacity = rate * BURST_S
        self.tat = max(self.tat, now + max(0.0, capacity - remaining) / rate)

    def pause(self, seconds: float, now: float) -> None:
        """Nothing before `now + seconds` (a refusal's reset time): the bucket is empty until then."""
        rate = self.rate
        if rate is not None:
            self.tat = max(self.tat, now + seconds + BURST_S)


class Window:
    """A semaphore whose size can change: the AIMD concurrency window."""

    def __init__(self, maximum: int, start: int | None = None) -> None:
        self.maximum = maximum
        self.size = float(min(maximum, start or maximum))
        self.threshold = float(maximum)  # slow start below it, additive increase above
        self.in_flight = 0
        self.epoch = 0  # bumped by every cut; a refusal from an older epoch cuts nothing
        self.lowest = maximum  # the smallest size a refusal cut it to (slow start is not a cut)
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch the request starts in."""
        if self.in_flight < int(self.size) and not self._waiters:
            self.in_flight += 1
            return self.epoch
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(future)
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.size):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)

    def succeeded(self) -> None:
        if self.size >= self.maximum:
            return
        self.size = min(float(self.maximum), self.size + (1.0 if self.size < self.threshold else 1.0 / self.size))
        self._wake()

    def refused(self, epoch: int) -> None:
        """A rate-limit refusal of a request sent in `epoch`: halve the window once per epoch."""
        if epoch != self.epoch:
            return
        self.epoch += 1
        self.size = max(1.0, self.size / 2.0)
        self.threshold = self.size
        self.lowest = min(self.lowest, int(self.size))


class Pacer:
    """What the client asks before each attempt: a window slot, then the buckets' go-ahead."""

    def __init__(self, concurrency: int, *, rpm: float = 0.0, tpm: float = 0.0, adaptive: bool = False) -> None:
        self.window = Window(concurrency, SLOW_START if adaptive else None)
        self.requests = Bucket(rpm)
        self.tokens = Bucket(tpm)
        self.adaptive = adaptive
        self.waits = 0  # attempts that waited for a bucket
        self.wait_s = 0.0
        self.refusals = 0  # 429s for the rate limit (not quota)

    async def ready(self, messages: tuple[tuple[str, str], ...], max_tokens: int) -> float:
        """Wait until both buckets allow one more attempt of this request; the seconds waited."""
        now = time.monotonic()
        delay = self.requests.reserve(1.0, now)
        if self.tokens.rate is not None:
            delay = max(delay, self.tokens.reserve(request_cost(messages, max_tokens), now))
        if delay <= 0.0:
            return 0.0
        self.waits += 1
        self.wait_s += delay
        await asyncio.sleep(delay)
        return delay

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Every answer's (or refusal's) headers: learn the limits and what is left."""
        parsed = RateHeaders.parse(headers)
        if parsed is None:
            return
        now = time.monotonic()
        self.requests.observe(parsed.limit_requests, parsed.remaining_requests, now)
        self.tokens.observe(parsed.limit_tokens, parsed.remaining_tokens, now)

    def refused(self, epoch: int, headers: Mapping[str, str] | None, retry_after: float | None) -> None:
        """A 429 for the rate limit: cut the window and empty the bucket that ran out until it resets."""
        self.refusals += 1
        if self.adaptive:
            self.window.refused(epoch)
        parsed = RateHeaders.parse(headers)
        now = time.monotonic()
        if parsed is not None:
            self.observe(headers)
            if parsed.remaining_requests == 0 and parsed.reset_requests_s is not None:
                self.requests.pause(min(parsed.reset_requests_s, 1.0 / (self.requests.rate or 1.0)), now)
            if parsed.remaining_tokens == 0 and parsed.reset_tokens_s is not None:
                self.tokens.pause(min(parsed.reset_tokens_s, 60.0), now)
        if retry_after is not None:
            self.requests.pause(retry_after, now)

    def succeeded(self) -> None:
        if self.adaptive:
            self.window.succeeded()

    @property
    def paced(self) -> bool:
        return self.requests.rate is not None or self.tokens.rate is not None

    def info(self) -> dict[str, Any]:
        """Figures for the round stats (only where pacing or adaptation is in play)."""
        return {"rate_limit_waits": self.waits, "rate_limit_wait_s": round(self.wait_s, 3),
                "rate_limit_refusals": self.refusals, "window_lowest": self.window.lowest,
                "window_final": int(self.window.size),
                "paced_rpm": round(self.requests.rate * 60, 1) if self.requests.rate else None,
                "paced_tpm": round(self.tokens.rate * 60, 1) if self.tokens.rate else None}


def request_cost(messages: tuple[tuple[str, str], ...], max_tokens: int) -> float:
    """Tokens a request counts against a token limit, as OpenAI estimates it before answering:
    the prompt (about 4 characters a token) plus the most it may write."""
    return sum(len(content) for _, content in messages) / 4.0 + max_tokens
