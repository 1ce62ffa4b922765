"""Several endpoints in `evolver.base_url`: spread by load, one dying mid-round changes nothing.

The pipeline runs the real stage scripts as subprocesses (`test_faults.Pipeline`) against
loopback servers; one of two replicas is killed a third of the way through round 1 (its
open connections dropped, new ones refused), and the data must be byte-identical to a
run against a single server.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import pytest
from fakeserver import FakeServer, default_responder
from test_faults import Pipeline, _closed_port, _llm, assert_accounted, seed_file  # noqa: F401 (a fixture)

from evolcoder.config import LLMConfig, load_section
from evolcoder.errors import ConfigError
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.client import EndpointDown, make_client


def test_one_replica_killed_a_third_of_the_way_through_changes_no_byte(tmp_path: Path, seed_file: Path) -> None:
    with FakeServer(latency=0.02) as single:
        alone = Pipeline(tmp_path / "single", seed_file, _llm(single.base_url))
        assert alone.run() == 0, alone.last
        round_one = json.loads((alone.root / "data/rounds/r1/stats.json").read_text())["llm_requests"]

    answered = {"n": 0}
    lock = threading.Lock()

    def dying(messages):  # the replica dies after answering a sixth of round 1 (a third of the total)
        with lock:
            answered["n"] += 1
            if answered["n"] == max(1, round_one // 6):
                threading.Thread(target=doomed.kill, daemon=True).start()
        return default_responder(messages)

    with FakeServer(latency=0.02) as survivor, FakeServer(latency=0.02, responder=dying) as doomed:
        pair = Pipeline(tmp_path / "pair", seed_file, _llm([survivor.base_url, doomed.base_url]))
        assert pair.run() == 0, pair.last
        assert doomed.killed and len(doomed.completed) >= max(1, round_one // 6)
        assert len(survivor.completed) > len(doomed.completed)
    assert pair.train() == alone.train()
    assert assert_accounted(pair.root) == assert_accounted(alone.root)
    stats = json.loads((pair.root / "data/rounds/r1/stats.json").read_text())
    ends = stats["llm_endpoints"]
    assert ends[doomed.base_url]["retired"] >= 1 and ends[survivor.base_url]["answered"] > 0


def test_requests_spread_over_both_endpoints(tmp_path: Path) -> None:
    with FakeServer(latency=0.05) as a, FakeServer(latency=0.05) as b:
        cfg = LLMConfig(provider="openai", model="fake", base_url=[a.base_url, b.base_url], concurrency=16,
                        cache=str(tmp_path / "cache.sqlite"))

        async def go() -> None:
            client = make_client(cfg, stage="spread")
            try:
                await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(64)))
            finally:
                await client.aclose()

        asyncio.run(go())
        counts = a.count("/v1/chat/completions"), b.count("/v1/chat/completions")
    assert sum(counts) == 64 and min(counts) >= 24, counts  # fewest in flight: about half each


def test_all_endpoints_down_stops_the_stage(tmp_path: Path) -> None:
    urls = [f"http://127.0.0.1:{_closed_port()}/v1", f"http://127.0.0.1:{_closed_port()}/v1"]
    cfg = LLMConfig(provider="openai", model="fake", base_url=urls, concurrency=4, backoff_s=0.01,
                    cache=str(tmp_path / "cache.sqlite"))

    async def go() -> list:
        client = make_client(cfg, stage="down")
        try:
            return await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(8)),
                                        return_exceptions=True)
        finally:
            await client.aclose()

    results = asyncio.run(go())
    assert all(isinstance(r, EndpointDown) for r in results), results
    assert "connection refused" in str(results[0])


@pytest.mark.parametrize("value, key", [(["http://a:8000/v1", "localhost:8001"], "evolver.base_url: item 1"),
                                        ([], "evolver.base_url"), ("ftp://x/v1", "evolver.base_url"),
                                        (["http://a/v1", "http://a/v1"], "evolver.base_url"),
                                        ([3], "evolver.base_url")])
def test_base_url_lists_are_validated_naming_the_key(tmp_path: Path, value: object, key: str) -> None:
    import yaml

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evolver": {"provider": "openai", "base_url": value}}))
    with pytest.raises(ConfigError, match=re.escape(f"params: {key}")):
        load_section(LLMConfig, "llm", params)


def test_eval_generation_takes_the_same_list(tmp_path: Path) -> None:
    """`generate.base_url` validates as a list, and raw completions spread over both servers."""
    import yaml

    from evolcoder.config import GenerateConfig
    from evolcoder.llm.cache import CompletionCache
    from evolcoder.llm.client import LLMClient
    from evolcoder.llm.openai_provider import OpenAICompletionsProvider

    with FakeServer(latency=0.05) as a, FakeServer(latency=0.05) as b:
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump({"generate": {"backend": "openai", "base_url": [a.base_url, b.base_url]}}))
        cfg = load_section(GenerateConfig, "generate", params)
        provider = OpenAICompletionsProvider("fake", api_model="fake", base_url=cfg.base_url, concurrency=8)

        async def go() -> list:
            client = LLMClient(provider, CompletionCache(tmp_path / "cache.sqlite"), concurrency=8)
            try:
                return await asyncio.gather(*(client.complete(ChatRequest.user(f"def f{i}():")) for i in range(16)))
            finally:
                await client.aclose()

        results = asyncio.run(go())
        assert a.count("/v1/completions") > 0 and b.count("/v1/completions") > 0
    assert len(results) == 16 and all(r.text for r in results)
