"""The streamed round: outcomes in input order, a bounded window, nothing written when incomplete."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from fakeserver import FakeServer, Fault, default_responder
from test_ratelimit import _items

from evolcoder.config import EvolConfig, LLMConfig
from evolcoder.errors import EndpointDown
from evolcoder.evolution.outputs import round_writer
from evolcoder.evolution.plan import round_plan
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.llm.client import make_client


def _run(cfg: LLMConfig, items: list[dict], out: Path, window: int) -> tuple[list[str], int]:
    plan = round_plan(EvolConfig(rounds=1, verify="off"), cfg, 1)
    reads = {"n": 0, "max_ahead": 0}
    emitted: list[str] = []

    def source():
        for item in items:
            reads["n"] += 1
            yield item

    async def go():
        client = make_client(cfg, stage="round@1")
        try:
            with round_writer(out) as write:
                def emit(outcome):
                    emitted.append(outcome.item["id"])
                    reads["max_ahead"] = max(reads["max_ahead"], reads["n"] - len(emitted))
                    write(outcome)
                return await RoundRunner(plan, client).stream(source(), emit, progress=False, window=window)
        finally:
            await client.aclose()

    asyncio.run(go())
    return emitted, reads["max_ahead"]


def test_outcomes_come_in_input_order_with_a_bounded_window(tmp_path: Path) -> None:
    rng = random.Random(7)

    def jittery(messages):  # answers finish out of order
        import time
        time.sleep(rng.random() * 0.02)
        return default_responder(messages)

    items = _items(60)
    with FakeServer(responder=jittery) as server:
        cfg = LLMConfig(provider="openai", model="fake", base_url=server.base_url, concurrency=16,
                        cache=str(tmp_path / "cache.sqlite"))
        emitted, ahead = _run(cfg, items, tmp_path / "out", window=8)
    assert emitted == [i["id"] for i in items]
    assert ahead <= 8  # never more than the window read but not yet written
    outcomes = [json.loads(line) for line in (tmp_path / "out/outcomes.jsonl").read_text().splitlines()]
    assert [o["id"] for o in outcomes] == emitted
    assert len((tmp_path / "out/pool.jsonl").read_text().splitlines()) == 60


def test_a_failed_round_leaves_no_output_files(tmp_path: Path) -> None:
    with FakeServer() as server:
        server.outage(Fault.error(500), after=10)
        cfg = LLMConfig(provider="openai", model="fake", base_url=server.base_url, concurrency=4,
                        max_attempts=2, backoff_s=0.01, max_consecutive_failures=3,
                        cache=str(tmp_path / "cache.sqlite"))
        with pytest.raises(EndpointDown):
            _run(cfg, _items(30), tmp_path / "out", window=8)
    assert not any((tmp_path / "out").iterdir()), list((tmp_path / "out").iterdir())
