"""The hot path of a chat request without the openai SDK's per-request machinery, same semantics.

Measured (benchmarks/bench_scale.py --floor, 50 ms loopback server, concurrency 256, this
2-core machine): the SDK's `AsyncOpenAI.post` alone costs about 0.9 ms of CPU per call
(request options model, URL merge and parse, header merge, httpx request and response
objects over its aiohttp adapter), a bare aiohttp POST about 0.25 ms. The SDK's CPU, not
the server, was what capped a round at ~750 requests/s.

What is kept exactly:
- the request: the same JSON body to `<base_url>/<route>`, `Authorization: Bearer <key>`,
  `OpenAI-Organization` / `OpenAI-Project` when the SDK would send them, JSON content type;
  timeouts per connect and per read of `llm.timeout_s`, as the SDK's httpx timeout; the
  SDK's CA bundle (`SSL_CERT_FILE` honoured) and proxies from the environment (`HTTPS_PROXY`,
  `NO_PROXY`, ...), looked up once per endpoint rather than by aiohttp's `trust_env`, which
  repeats the lookup and a `~/.netrc` read in worker threads on every request: a third of the
  round's CPU at 256 in flight, and a netrc entry for the host failed every request (aiohttp
  will not combine netrc credentials with an Authorization header);
- the answer: the body parsed as JSON, headers handed to the rate-limit pacer;
- every failure is raised as the SDK's own exception: an HTTP error status goes through the
  SDK's `_make_status_error_from_response` (same class, message, `code` and body), a
  transport failure becomes `APIConnectionError` / `APITimeoutError` with the aiohttp error
  (and its OS cause) chained, so `openai_provider` translates both paths alike.

Not sent: the SDK's telemetry headers (`X-Stainless-*`, its User-Agent), which no server
acts on. `OpenAIProvider(transport="aiohttp"|"httpx")` still goes through the SDK.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import aiohttp.helpers
import openai
import yarl

try:  # the HTTP library this openai release is built on, for its request/response types
    import httpx2
except ImportError:  # pragma: no cover - older openai releases use httpx
    import httpx as httpx2  # type: ignore[no-redef]


class DirectHTTP:
    """POST JSON to one OpenAI-compatible endpoint over a pooled aiohttp session."""

    def __init__(self, sdk: openai.AsyncOpenAI, timeout_s: float, concurrency: int,
                 on_headers: Callable[[Any], None]) -> None:
        self._sdk = sdk  # never sends here: its settings, and its error factory on the rare error path
        self._base = str(sdk.base_url).rstrip("/")
        headers = {"Authorization": f"Bearer {sdk.api_key}", "Content-Type": "application/json",
                   "Accept": "application/json"}
        for name, value in (("OpenAI-Organization", sdk.organization), ("OpenAI-Project", sdk.project)):
            if value:
                headers[name] = value
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._limit = max(100, concurrency)
        self._on_headers = on_headers
        self._session: aiohttp.ClientSession | None = None
        self._proxy, self._proxy_auth = env_proxy(self._base)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # as the SDK's transport: its CA bundle (and SSL_CERT_FILE); no trust_env (see the module doc)
            ssl_context = httpx2.create_ssl_context(verify=True, trust_env=True)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=ssl_context), timeout=self._timeout,
                headers=self._headers, skip_auto_headers=("User-Agent",))
        return self._session

    async def post(self, route: str, body: dict[str, Any]) -> Any:
        """The answer's JSON; an error status or a transport failure raised as the SDK raises it."""
        url = self._base + route
        try:
            async with self._open().post(url, data=json.dumps(body).encode("utf-8"), proxy=self._proxy,
                                         proxy_auth=self._proxy_auth) as resp:
                raw = await resp.read()
                self._on_headers(resp.headers)
                status = resp.status
                if status >= 400:
                    raise self._status_error(url, status, resp.headers, raw)
        except asyncio.TimeoutError as exc:
            raise openai.APITimeoutError(request=httpx2.Request("POST", url)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise openai.APIConnectionError(request=httpx2.Request("POST", url)) from exc
        return json.loads(raw)

    def _status_error(self, url: str, status: int, headers: Any, raw: bytes) -> openai.APIStatusError:
        response = httpx2.Response(status, headers=list(headers.items()), content=raw,
                                   request=httpx2.Request("POST", url))
        return self._sdk._make_status_error_from_response(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def env_proxy(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) the environment names for `url`, or none (NO_PROXY, unset)."""
    try:
        proxy, auth = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(url))
    except LookupError:
        return None, None
    return str(proxy), auth
