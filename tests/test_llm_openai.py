"""The openai provider over real HTTP: retries, Retry-After, timeouts, malformed bodies, keys."""

from __future__ import annotations

import asyncio
import email.utils
import sqlite3
import time
from pathlib import Path

import pytest
from fakeserver import FakeServer, Fault

from evolcoder.config import LLMConfig

from evolcoder.errors import ConfigError
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.client import EndpointDown, LLMClient, LLMError, RequestFailed, make_client
from evolcoder.llm.openai_provider import OpenAIProvider, parse_retry_after


def _cfg(server: FakeServer, tmp: Path, **kw) -> LLMConfig:
    settings = {"model": "fake", "base_url": server.base_url, "concurrency": 4, "max_attempts": 4,
                "timeout_s": 5.0, "backoff_s": 0.01, "cache": str(tmp / "cache.sqlite"), "seed": 17}
    settings.update(kw)
    return LLMConfig(**{"provider": "openai", **settings})


def _call(cfg: LLMConfig, *requests: ChatRequest) -> tuple[list, dict]:
    async def go():
        client = make_client(cfg, stage="test")
        try:
            results = await asyncio.gather(*(client.complete(r) for r in requests), return_exceptions=True)
            return results, client.usage()
        finally:
            await client.aclose()

    return asyncio.run(go())


def _log(cfg: LLMConfig) -> list[tuple]:
    with sqlite3.connect(cfg.cache) as db:
        return db.execute("SELECT cached, attempts, error FROM calls ORDER BY id").fetchall()


@pytest.mark.parametrize("fault", [Fault.rate_limit("0"), Fault.error(500), Fault.error(503),
                                   Fault.bad_json(), Fault(status=200, stall=3.0),
                                   Fault.raw('{"choices": []}'), Fault.raw('{"error": "overloaded"}'),
                                   Fault.raw("<html>502 Bad Gateway</html>", "text/html")],
                         ids=["429", "500", "503", "malformed-json", "stall", "no-choices", "error-body",
                              "html-200"])
def test_transient_failure_is_retried_and_counted(tmp_path: Path, fault: Fault) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, timeout_s=0.5)
        server.push(fault, fault)
        start = time.perf_counter()
        [result], usage = _call(cfg, ChatRequest.user("Write fizzbuzz."))
        elapsed = time.perf_counter() - start
        assert server.count("/v1/chat/completions") == 3
    assert not isinstance(result, BaseException), result
    assert "```python" in result.text and not result.cached
    assert usage["requests"] == 1 and usage["retries"] == 2 and usage["failures"] == 0
    assert _log(cfg) == [(0, 3, None)]
    if fault.stall:
        assert elapsed < 2 * fault.stall, "timeout_s must cut a stalled request short"


def test_retry_after_seconds_is_honoured(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, backoff_s=0.0)
        server.push(Fault.rate_limit("1"))
        start = time.perf_counter()
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        elapsed = time.perf_counter() - start
    assert not isinstance(result, BaseException) and usage["retries"] == 1
    assert elapsed >= 1.0, "the client must wait at least Retry-After before retrying"


def test_empty_or_null_content_is_retried_and_never_cached(tmp_path: Path) -> None:
    null = '{"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": null}}]}'
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        server.push(Fault.raw(null), Fault.empty(), Fault.reply("  \n"))
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        assert server.count() == 4
    assert not isinstance(result, BaseException), result
    assert "```python" in result.text
    assert usage["retries"] == 3 and usage["retries_by_cause"] == {"empty": 3}
    with sqlite3.connect(cfg.cache) as db:
        assert [r[0] for r in db.execute("SELECT text FROM completions")] == [result.text]


def test_missing_usage_is_read_as_zero_tokens(tmp_path: Path) -> None:
    body = '{"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}'
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        server.push(Fault.raw(body))
        [result], usage = _call(cfg, ChatRequest.user("hello"))
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("ok", 0, 0)
    assert usage["requests"] == 1 and usage["retries"] == 0


def test_an_empty_answer_that_persists_fails_the_request_uncached(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, max_attempts=3)
        server.push(Fault.empty(), Fault.empty(), Fault.empty())
        (result, other), usage = _call(cfg, ChatRequest.user("hello"))[0] + _call(cfg, ChatRequest.user("other"))[0], None
        assert server.count() == 4
    assert isinstance(result, RequestFailed) and not result.permanent and result.cause == "empty"
    with sqlite3.connect(cfg.cache) as db:
        assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 1  # only "other"


def test_retry_after_forms() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert 28 <= parse_retry_after({"retry-after": date}, now=now) <= 31
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_gives_up_after_max_attempts_and_logs_the_error(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, max_attempts=3, max_consecutive_failures=0)
        server.push(*[Fault.error(502)] * 3)
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        assert server.count() == 3
    assert isinstance(result, RequestFailed) and "3 attempts" in str(result) and "502" in str(result)
    assert not result.permanent and result.cause == "server_error"
    assert usage["failures"] == 1 and usage["retries"] == 2
    assert usage["retries_by_cause"] == {"server_error": 2} and usage["failures_by_cause"] == {"server_error": 1}
    [(cached, attempts, error)] = _log(cfg)
    assert (cached, attempts) == (0, 3) and "502" in error


def test_first_request_failing_in_transport_stops_the_stage(tmp_path: Path) -> None:
    """Nothing answered and the first request exhausted its retries on 5xx: the endpoint is down."""
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, max_attempts=3, concurrency=1)
        server.outage(Fault.error(500))
        results, usage = _call(cfg, *[ChatRequest.user(f"q{i}") for i in range(5)])
        assert server.count() == 3, "only the first request's attempts reach the server"
    assert all(isinstance(r, EndpointDown) for r in results)
    assert "nothing has been answered" in str(results[0]) and "HTTP 500" in str(results[0])


def test_breaker_stops_after_consecutive_failures_once_answers_stopped(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, max_attempts=2, concurrency=1, max_consecutive_failures=3)
        server.outage(Fault.drop_connection(), after=2)
        results, usage = _call(cfg, *[ChatRequest.user(f"q{i}") for i in range(10)])
        assert server.count() == 2 + 3 * 2, "2 answers, then 3 requests of 2 attempts, then the breaker"
    assert [type(r).__name__ for r in results[:5]] == ["CallResult"] * 2 + ["RequestFailed"] * 2 + ["EndpointDown"]
    assert all(isinstance(r, EndpointDown) for r in results[4:])
    assert "3 requests in a row" in str(results[4]) and "llm.max_consecutive_failures=3" in str(results[4])
    assert results[2].cause == "connection"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_client_error_is_permanent_not_retried(tmp_path: Path, status: int) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        server.push(Fault.error(status))
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        assert server.count() == 1
    assert isinstance(result, RequestFailed) and result.permanent and result.cause == "invalid_request"
    assert usage["retries"] == 0 and usage["failures_by_cause"] == {"invalid_request": 1}
    assert f"HTTP {status} from {cfg.base_url}" in str(result)


def test_request_carries_model_sampling_settings_and_seed(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        request = ChatRequest(messages=(("system", "Be terse."), ("user", "hi")), temperature=0.3,
                              top_p=0.9, max_tokens=77, seed=cfg.seed)
        [result], usage = _call(cfg, request)
        [body] = server.requests
    assert body["model"] == "fake" and body["seed"] == 17 and body["max_tokens"] == 77
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    assert usage["prompt_tokens"] == result.prompt_tokens > 0 and usage["completion_tokens"] > 0


def test_missing_key_fails_before_any_work_when_talking_to_openai(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_client(LLMConfig(provider="openai", model="gpt-4o-mini", cache=str(tmp_path / "c.sqlite")))


def test_local_server_needs_no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer() as server:
        [result], _ = _call(_cfg(server, tmp_path), ChatRequest.user("hi"))
    assert not isinstance(result, BaseException)


def test_sdk_retries_are_off_so_ours_are_the_only_ones(tmp_path: Path) -> None:
    with FakeServer() as server:
        provider = OpenAIProvider("fake", base_url=server.base_url)
        server.push(Fault.error(500))

        async def go():
            client = LLMClient(provider, _cache(tmp_path), max_attempts=1, max_consecutive_failures=0)
            try:
                return await client.complete(ChatRequest.user("x"))
            finally:
                await client.aclose()

        with pytest.raises(LLMError):
            asyncio.run(go())
        assert server.count() == 1


def _cache(tmp: Path):
    from evolcoder.llm.cache import CompletionCache

    return CompletionCache(tmp / "cache.sqlite")


def test_sdk_default_httpx_transport_retries_the_same_way(tmp_path: Path) -> None:
    """The aiohttp transport is an optimisation; without it the same faults are handled."""
    with FakeServer() as server:
        provider = OpenAIProvider("fake", base_url=server.base_url, timeout_s=0.5, transport="httpx")
        assert provider.transport == "httpx"
        server.push(Fault.rate_limit("0"), Fault.bad_json(), Fault.hang(2.0))

        async def go():
            client = LLMClient(provider, _cache(tmp_path), max_attempts=4, backoff_s=0.01)
            try:
                return await client.complete(ChatRequest.user("x")), client.usage()
            finally:
                await client.aclose()

        result, usage = asyncio.run(go())
        assert server.count() == 4
    assert "```python" in result.text and usage["retries"] == 3


@pytest.mark.parametrize("status, words", [(401, "OPENAI_API_KEY"), (403, "OPENAI_API_KEY"),
                                           (404, "evolver.model")])
def test_wrong_key_or_model_stops_with_a_config_error(tmp_path: Path, status: int, words: str) -> None:
    """Every request would fail alike, so the stage stops instead of failing each item."""
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        server.push(Fault.error(status))
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        assert server.count() == 1
    assert isinstance(result, ConfigError) and words in str(result)
    assert usage["failures"] == 1 and usage["retries"] == 0


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("transport", ["auto", "httpx"])
def test_wrong_port_stops_at_once_naming_url_and_refused(tmp_path: Path, transport: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    provider = OpenAIProvider("fake", base_url=url, transport=transport)

    async def go():
        client = LLMClient(provider, _cache(tmp_path), concurrency=4, max_attempts=6, backoff_s=1.0)
        try:
            return await asyncio.gather(*(client.complete(ChatRequest.user(f"q{i}")) for i in range(8)),
                                        return_exceptions=True), client.usage()
        finally:
            await client.aclose()

    start = time.perf_counter()
    results, usage = asyncio.run(go())
    elapsed = time.perf_counter() - start
    assert all(isinstance(r, EndpointDown) for r in results), results
    assert url in str(results[0]) and "connection refused" in str(results[0])
    assert usage["retries"] == 0 and elapsed < 5.0, "no backoff before the first answer: fail in seconds"


def test_unknown_host_names_dns(tmp_path: Path) -> None:
    provider = OpenAIProvider("fake", base_url="http://no-such-host.invalid:8000/v1")

    async def go():
        client = LLMClient(provider, _cache(tmp_path), max_attempts=6, backoff_s=1.0)
        try:
            return await client.complete(ChatRequest.user("q"))
        finally:
            await client.aclose()

    with pytest.raises(EndpointDown, match="cannot resolve the host of evolver.base_url http://no-such-host.invalid"):
        asyncio.run(go())


def test_insufficient_quota_stops_instead_of_retrying(tmp_path: Path) -> None:
    body = '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}'
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        server.push(Fault(status=429, body=body))
        [result], usage = _call(cfg, ChatRequest.user("hello"))
        assert server.count() == 1
    assert isinstance(result, EndpointDown) and "quota" in str(result)


def test_wrong_route_fails_at_once_naming_the_url(tmp_path: Path) -> None:
    """A base_url missing its /v1 reaches the server but no route: a config error, no retries."""
    with FakeServer() as server:
        url = server.base_url.removesuffix("/v1")
        cfg = _cfg(server, tmp_path, base_url=url)
        results, usage = _call(cfg, *[ChatRequest.user(f"q{i}") for i in range(4)])
    assert all(isinstance(r, ConfigError) for r in results)
    assert url in str(results[0]) and "404" in str(results[0]) and "/v1" in str(results[0])
    assert usage["retries"] == 0


class _ForwardingProxy:
    """A plain-HTTP forward proxy on 127.0.0.1 that relays POSTs to `upstream` and records the
    absolute URLs it was asked for (the form clients use when they go through a proxy)."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.request

        self.seen: list[str] = []
        proxy = self
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not through HTTP_PROXY: itself

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                proxy.seen.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = "/" + self.path.split("/", 3)[3]  # http://host/v1/... -> /v1/...
                forwarded = urllib.request.Request(upstream.rstrip("/").removesuffix("/v1") + route, data=body,
                                                   headers={"Content-Type": "application/json"})
                with direct.open(forwarded, timeout=10) as resp:
                    answer = resp.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_requests_go_through_the_proxy_the_environment_names(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from evolcoder.llm.direct_http import env_proxy

    with FakeServer() as server:
        proxy = _ForwardingProxy(server.base_url)
        try:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            # a host that does not resolve: only the proxy can reach it
            cfg = _cfg(server, tmp_path, base_url="http://upstream.invalid/v1", max_attempts=1)
            results, usage = _call(cfg, *(ChatRequest.user(f"Write function {i}.") for i in range(3)))
        finally:
            proxy.close()
        assert server.count("/v1/chat/completions") == 3
    assert all(not isinstance(r, BaseException) and r.text for r in results), results
    assert proxy.seen == ["http://upstream.invalid/v1/chat/completions"] * 3
    assert usage["requests"] == 3
    monkeypatch.setenv("NO_PROXY", "upstream.invalid")
    assert env_proxy("http://upstream.invalid/v1") == (None, None)
