"""Pacing to a provider's rate limit: headers parsed, the window adapts, a round runs near the limit.

The loopback test is the issue's scenario shrunk to CI size: a server that enforces a
requests-per-minute token bucket, sends OpenAI's `x-ratelimit-*` headers and refuses the
excess with a bare 429 (no Retry-After), and a round at high concurrency against it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fakeserver import FakeServer

from evolcoder.config import EvolConfig, LLMConfig
from evolcoder.evolution.plan import round_plan
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.cache import CompletionCache
from evolcoder.llm.client import make_client
from evolcoder.llm.ratelimit import HEADROOM, Bucket, Pacer, RateHeaders, Window, parse_duration
from evolcoder.records import seed_record


@pytest.mark.parametrize("text, seconds", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5),
                                           ("0.5", 0.5), ("", None), ("soon", None), ("5x", None)])
def test_openai_reset_durations_parse(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_rate_headers_parse_and_missing_ones_are_none() -> None:
    parsed = RateHeaders.parse({"x-ratelimit-limit-requests": "6000", "x-ratelimit-remaining-requests": "12",
                                "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "bad"})
    assert parsed == RateHeaders(6000.0, 12.0, 0.12, None, None, None)
    assert RateHeaders.parse({"content-type": "application/json"}) is None


def test_bucket_spaces_reservations_at_the_learned_rate() -> None:
    bucket = Bucket()
    assert bucket.reserve(1.0, 0.0) == 0.0  # nothing known: no pacing
    bucket.observe(600.0, 0.0, now=100.0)  # 600/min at HEADROOM, nothing left now
    delays = [bucket.reserve(1.0, 100.0) for _ in range(20)]
    assert delays == sorted(delays) and delays[0] > 0.0
    assert delays[-1] - delays[0] == pytest.approx(19 / (10 * HEADROOM))
    capped = Bucket(cap_per_min=60.0)  # the user's cap is lower than the header's limit
    capped.observe(6000.0, None, now=0.0)
    assert capped.rate == pytest.approx(1.0)


def test_window_halves_once_per_epoch_and_grows_back() -> None:
    window = Window(64)
    epoch = window.epoch
    for _ in range(10):  # ten refusals of requests sent before the cut: one cut
        window.refused(epoch)
    assert window.size == 32 and window.lowest == 32
    window.refused(window.epoch)
    assert window.size == 16
    for _ in range(16):  # additive increase: about one slot per window of successes
        window.succeeded()
    assert 16 < window.size < 18


def test_window_never_lets_more_than_its_size_in_flight() -> None:
    async def go() -> int:
        window, peak = Window(8), 0

        async def one() -> None:
            nonlocal peak
            await window.acquire()
            peak = max(peak, window.in_flight)
            await asyncio.sleep(0.001)
            if window.epoch == 0:
                window.refused(0)  # shrink to 4 mid-run
            window.release()

        await asyncio.gather(*(one() for _ in range(100)))
        assert window.in_flight == 0
        return peak

    assert asyncio.run(go()) == 8


def _items(n: int) -> list[dict]:
    return [seed_record(f"Write a Python function that returns the {i}-th square number for an integer n.", "", "") for i in range(n)]


def test_a_high_concurrency_round_paces_to_the_servers_rate_limit(tmp_path: Path) -> None:
    """3,000 requests/min, no Retry-After: a round at concurrency 128 completes, <= 5 % refused."""
    rpm, n_items = 3000.0, 120
    cfg = LLMConfig(provider="openai", model="fake", concurrency=128, max_attempts=6, backoff_s=0.05,
                    cache=str(tmp_path / "cache.sqlite"))
    with FakeServer(latency=0.02) as server:
        server.rate_limit(rpm)
        cfg = LLMConfig(**{**cfg.__dict__, "base_url": server.base_url})
        plan = round_plan(EvolConfig(rounds=1, verify="off"), cfg, 1)

        async def go():
            client = make_client(cfg, stage="round@1")
            try:
                return await RoundRunner(plan, client).run(_items(n_items), progress=False)
            finally:
                await client.aclose()

        start = time.perf_counter()
        result = asyncio.run(go())
        wall = time.perf_counter() - start
        received, refused = server.count("/v1/chat/completions"), server.refused
    stats = result.stats()
    assert stats["failed"] == 0 and stats["items_in"] == n_items
    answered = stats["llm_requests"]
    assert received == answered + refused
    assert refused <= 0.05 * received, f"{refused} of {received} requests refused"
    assert stats["llm_rate_limit_waits"] > 0 and stats["llm_paced_rpm"] == pytest.approx(rpm * HEADROOM)
    # the answers did not come faster than the key allows (plus its one-second burst)
    assert answered <= rpm / 60.0 * (wall + 1.0) + 1
    with CompletionCache(tmp_path / "cache.sqlite") as cache:
        [row] = cache.stats("round@1")
    assert row["rate_limit_waits"] > 0 and row["rate_limit_wait_seconds"] > 0
    from click.testing import CliRunner

    from evolcoder.cli import main

    shown = CliRunner().invoke(main, ["cache", "stats", "--cache", str(tmp_path / "cache.sqlite"),
                                      "--params", str(tmp_path / "none.yaml")])
    assert shown.exit_code == 0, shown.output
    assert f"rate-limit waits: {row['rate_limit_waits']} requests paced" in shown.output


def test_rpm_cap_paces_a_server_without_headers(tmp_path: Path) -> None:
    """`llm.rpm` alone: 40 requests at 600/min take about 40 / 10 s, minus one second of burst."""
    with FakeServer() as server:
        cfg = LLMConfig(provider="openai", model="fake", base_url=server.base_url, concurrency=64, rpm=600,
                        cache=str(tmp_path / "cache.sqlite"))

        async def go() -> dict:
            client = make_client(cfg, stage="capped")
            try:
                await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(40)))
                return client.usage()
            finally:
                await client.aclose()

        start = time.perf_counter()
        usage = asyncio.run(go())
        wall = time.perf_counter() - start
    assert usage["requests"] == 40 and usage["rate_limit_waits"] > 0
    assert wall >= (40 - 10) / 10.0 * 0.9  # the cap held: no more than a second's burst


def test_pacer_info_reports_waits_and_refusals() -> None:
    pacer = Pacer(32, adaptive=True)
    assert pacer.window.size == 16  # slow start below llm.concurrency
    pacer.refused(pacer.window.epoch, {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                                       "x-ratelimit-reset-requests": "1s"}, None)
    info = pacer.info()
    assert info["rate_limit_refusals"] == 1 and info["window_lowest"] == 8 and info["paced_rpm"] == round(60 * HEADROOM, 1)
