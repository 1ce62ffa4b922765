"""The client's concurrency over real HTTP: bounded, streaming (not batch-and-wait), order-safe."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from fakeserver import EVOL_PREFIX, FakeServer, Fault, default_responder, subprocess_server, remote_stats

from evolcoder.config import LLMConfig
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.client import CallResult, make_client
from evolcoder.evolution.prompts import paper_prompt


def _cfg(base_url: str, tmp: Path, **kw) -> LLMConfig:
    settings = {"model": "fake", "base_url": base_url, "concurrency": 4, "max_attempts": 3,
                "timeout_s": 10.0, "backoff_s": 0.01, "cache": str(tmp / "cache.sqlite")}
    settings.update(kw)
    return LLMConfig(**{"provider": "openai", **settings})


def test_in_flight_requests_never_exceed_concurrency_and_reach_it(tmp_path: Path) -> None:
    with FakeServer(latency=0.05) as server:
        cfg = _cfg(server.base_url, tmp_path, concurrency=5)

        async def go():
            client = make_client(cfg)
            try:
                await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(30)))
            finally:
                await client.aclose()

        asyncio.run(go())
        assert server.count() == 30 and server.max_in_flight == 5


def test_a_slow_request_does_not_hold_back_the_others(tmp_path: Path) -> None:
    """Streaming pool: the other slot keeps serving while one request stalls."""
    with FakeServer(latency=0.0) as server:
        cfg = _cfg(server.base_url, tmp_path, concurrency=2)
        server.push(Fault.hang(6.0))  # a wide margin: the other slot needs ~0.1 s for its 9 requests
        finished: list[int] = []

        async def go():
            client = make_client(cfg)

            async def one(i: int) -> None:
                await client.complete(ChatRequest.user(f"q{i}"))
                finished.append(i)

            try:
                await asyncio.gather(*(one(i) for i in range(10)))
            finally:
                await client.aclose()

        asyncio.run(go())
    # q0 and q1 start together and either may reach the server first and get the stall.
    stalled = finished[-1]
    assert stalled in (0, 1), f"the stalled request must finish last: {finished}"
    assert sorted(finished[:-1]) == sorted(set(range(10)) - {stalled}), "the free slot serves all the others"


def test_each_result_belongs_to_its_request_at_any_concurrency(tmp_path: Path) -> None:
    questions = [f"Write a function that returns {i} squared plus {i}." for i in range(40)]
    requests = [ChatRequest.user(paper_prompt("constraints", q)) for q in questions]
    texts = {}
    for conc in (1, 16):
        with FakeServer(latency=0.01) as server:
            cfg = _cfg(server.base_url, tmp_path / f"c{conc}", concurrency=conc)

            async def go() -> list[CallResult]:
                client = make_client(cfg)
                try:
                    return await asyncio.gather(*(client.complete(r) for r in requests))
                finally:
                    await client.aclose()

            results = asyncio.run(go())
        texts[conc] = [r.text for r in results]
        for question, result in zip(questions, results):
            assert result.text.startswith(question) and len(result.text) > len(question)
    assert texts[1] == texts[16]


def test_fake_server_default_replies() -> None:
    evolved = default_responder([{"role": "user", "content": paper_prompt("erroneous_code", "Sum a list.")}])
    assert evolved.startswith("Sum a list.") and "```python" in evolved
    assert EVOL_PREFIX not in evolved
    answer = default_responder([{"role": "user", "content": "Sum a list."}])
    assert "```python" in answer and len(answer.split()) >= 80
    assert answer == default_responder([{"role": "user", "content": "Sum a list."}])


def test_subprocess_server_serves_the_client(tmp_path: Path) -> None:
    with subprocess_server(latency=0.01) as url:
        cfg = _cfg(url, tmp_path, concurrency=8)

        async def go():
            client = make_client(cfg)
            try:
                return await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(16)))
            finally:
                await client.aclose()

        results = asyncio.run(go())
        stats = remote_stats(url)
    assert stats["paths"] == {"/v1/chat/completions": 16} and len(stats["completed"]) == 16
    assert all(re.search(r"```python\n", r.text) for r in results)


def test_backoff_doubles_with_jitter_and_retry_after_is_capped(tmp_path: Path) -> None:
    from evolcoder.llm.cache import CompletionCache
    from evolcoder.llm.client import MAX_BACKOFF_S, MAX_RETRY_AFTER_S, LLMClient
    from evolcoder.llm.openai_provider import OpenAIProvider

    client = LLMClient(OpenAIProvider("m", base_url="http://127.0.0.1:9/v1"),
                       CompletionCache(tmp_path / "c.sqlite"), backoff_s=0.5)
    for attempt in range(1, 10):
        expected = min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1))
        assert expected <= client._delay(attempt, None) <= 1.25 * expected
    assert 7.0 <= client._delay(1, 7.0) <= 1.25 * 7.0
    assert client._delay(1, 86400.0) <= 1.25 * MAX_RETRY_AFTER_S
    client.cache.close()


def test_fake_server_speaks_completions_and_models_to_the_real_sdk() -> None:
    import openai

    with FakeServer() as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert [m.id for m in sdk.models.list()] == ["fake-model"]
        text = sdk.completions.create(model="m", prompt="Sum a list.").choices[0].text
        server.push("scripted reply")
        chat = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert server.count("/v1/completions") == 1 and server.count("/v1/models") == 1
    assert "```python" in text and chat.choices[0].message.content == "scripted reply"
    assert chat.usage.completion_tokens == 2
