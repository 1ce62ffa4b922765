"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server) via `openai`.

The SDK's own retries are switched off (`max_retries=0`): the client retries, counts and
logs every attempt itself, so this module only translates the SDK's exceptions into
`TransientError` (worth retrying, with the server's Retry-After and a cause),
`PermanentError` (this request was rejected), or `ConfigError` (key, model or route wrong:
every request would fail alike). The SDK wraps a refused connection or an unknown host in
`APIConnectionError` (even `APITimeoutError`); the real cause is found in the exception
chain, so a wrong port reads "connection refused", not "timed out".
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import openai
from openai import AsyncOpenAI

from evolcoder.config import LLMConfig
from evolcoder.errors import ConfigError
from evolcoder.llm.base import (TRANSPORT_CAUSES, ChatRequest, Completion, EndpointDown, PermanentError,
                                TransientError)

RETRYABLE_STATUS = {408, 409, 425, 429}
# Transport errors (aiohttp, httpx) that mean "the connection broke", whatever the SDK calls them:
# its aiohttp adapter reports a server hanging up on a pooled connection as a *timeout*.
DISCONNECTED = {"ServerDisconnectedError", "RemoteProtocolError", "ClientOSError", "ReadError", "WriteError"}


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
    raise ConfigError("OPENAI_API_KEY is not set: export it to call OpenAI, or set evolver.base_url "
                      "to a local OpenAI-compatible server (vLLM, Ollama, llama.cpp) that needs no key")


def _http_client(timeout_s: float, concurrency: int, hooks: dict[str, list[Any]]) -> Any:
    """The SDK's aiohttp transport when `aiohttp` is installed, else None (its httpx default).

    aiohttp's C parser and single-write requests cost about a quarter less CPU per call
    than the default transport, which is what bounds throughput at high concurrency.
    `hooks` are httpx event hooks (the rate-limit headers of every answer).
    """
    factory = getattr(openai, "DefaultAioHttpClient", None)
    limits_type = type(getattr(openai, "DEFAULT_CONNECTION_LIMITS", None))
    if factory is None or limits_type is type(None):
        return None
    try:
        import aiohttp  # noqa: F401

        limits = limits_type(max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency))
        return factory(timeout=timeout_s, limits=limits, event_hooks=hooks)
    except (ImportError, RuntimeError, TypeError):
        return None


def _aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return hasattr(openai, "DefaultAioHttpClient")


RETIRE_AFTER = 3  # transport failures in a row that take an endpoint out of rotation (refused: at once)
COOLDOWN_S = (1.0, 30.0)  # first and longest pause before a retired endpoint is tried again


class Endpoint:
    """One server of a `base_url` list: its own SDK client, requests in flight and circuit breaker."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.client: AsyncOpenAI | None = None
        self.direct: Any = None  # DirectHTTP when the transport is "direct"
        self.in_flight = 0
        self.answered = 0
        self.failed_in_a_row = 0
        self.retired_until = 0.0  # monotonic time before which it is out of rotation
        self.cooldown = COOLDOWN_S[0]
        self.retirements = 0

    def where(self) -> str:
        return self.url or "api.openai.com"

    def failed(self, exc: TransientError, now: float) -> None:
        """A transport failure: out of rotation after `RETIRE_AFTER` in a row, or at once when refused."""
        self.failed_in_a_row += 1
        if exc.unreachable or self.failed_in_a_row >= RETIRE_AFTER:
            self.retired_until = now + self.cooldown
            self.cooldown = min(COOLDOWN_S[1], self.cooldown * 2)
            self.retirements += 1

    def worked(self) -> None:
        self.answered += 1
        if self.failed_in_a_row:
            self.failed_in_a_row = 0
            self.cooldown = COOLDOWN_S[0]


class OpenAIProvider:
    """`AsyncOpenAI` clients (one per endpoint) with connection pools sized for `llm.concurrency`.

    With several endpoints (a `base_url` list: replicas of one model), each request goes to
    the endpoint in rotation with the fewest requests in flight. A transport failure
    (refused, reset, timeout, 5xx) counts against that endpoint alone; a refused connection
    or `RETIRE_AFTER` failures in a row take it out of rotation for a cooldown that doubles
    while it stays dead (then one request probes it). The failed request is handed back
    as retryable at once (`retry_after=0`), so the client's retry goes to a live endpoint;
    only when every endpoint is out does the error reach the client's breaker as it is,
    which stops the stage as with one server. Which endpoint answered is in no cache key.
    """

    name = "openai"
    params_keys = ("evolver.model", "evolver")  # what an error message names

    def __init__(self, model: str, *, base_url: str | list[str] | None = None, timeout_s: float = 120.0,
                 concurrency: int = 8, transport: str = "auto", api_key: str | None = None) -> None:
        self.model = model
        urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
        urls = urls or [os.environ.get("OPENAI_BASE_URL") or None]  # type: ignore[list-item]
        self._endpoints = [Endpoint(url) for url in urls]
        self._base_url = urls[0]
        self._api_key = api_key or api_key_for(self._base_url)  # fail before any work, not at the first miss
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        if transport == "auto":
            transport = "direct" if _aiohttp_available() else "httpx"
        self.transport = transport  # direct (aiohttp, SDK semantics) | aiohttp | httpx (both through the SDK)
        self.observe_headers: Callable[[Any], None] | None = None  # set by the client (its pacer)

    def _client_for(self, endpoint: Endpoint) -> AsyncOpenAI:
        """Built on the first paid call: a fully cached re-run never sets up HTTP or TLS."""
        if endpoint.client is None and self.transport == "direct":
            from evolcoder.llm.direct_http import DirectHTTP

            endpoint.client = AsyncOpenAI(base_url=endpoint.url, api_key=self._api_key, timeout=self._timeout_s,
                                          max_retries=0)
            endpoint.direct = DirectHTTP(endpoint.client, self._timeout_s, self._concurrency, self._observe)
        if endpoint.client is None:
            hooks = {"response": [self._on_response]}
            http = _http_client(self._timeout_s, self._concurrency, hooks) if self.transport == "aiohttp" else None
            if http is None:
                self.transport = "httpx"
                limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
                    max_connections=max(100, self._concurrency), max_keepalive_connections=max(20, self._concurrency))
                http = openai.DefaultAsyncHttpxClient(timeout=self._timeout_s, event_hooks=hooks, limits=limits)
            endpoint.client = AsyncOpenAI(base_url=endpoint.url, api_key=self._api_key, timeout=self._timeout_s,
                                          max_retries=0, http_client=http)
        return endpoint.client

    @property
    def client(self) -> AsyncOpenAI:
        return self._client_for(self._endpoints[0])

    async def _on_response(self, response: Any) -> None:
        self._observe(response.headers)

    def _observe(self, headers: Any) -> None:
        observe = self.observe_headers
        if observe is not None:
            observe(headers)

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
        return completion_from_json(await self._post("/chat/completions", body))

    def _pick(self) -> Endpoint:
        """The endpoint in rotation with the fewest in flight; if none is, the one back soonest."""
        if len(self._endpoints) == 1:
            return self._endpoints[0]
        now = time.monotonic()
        live = [e for e in self._endpoints if e.retired_until <= now]
        if not live:
            return min(self._endpoints, key=lambda e: e.retired_until)
        return min(live, key=lambda e: e.in_flight)

    async def _post(self, route: str, body: dict[str, Any]) -> Any:
        """The JSON answer from one endpoint; a transport failure there is retried elsewhere."""
        endpoint = self._pick()
        endpoint.in_flight += 1
        try:
            answer = await self._post_to(endpoint, route, body)
        except TransientError as exc:
            if exc.cause in TRANSPORT_CAUSES and len(self._endpoints) > 1:
                raise self._failover(endpoint, exc) from exc
            raise
        finally:
            endpoint.in_flight -= 1
        endpoint.worked()
        return answer

    def _failover(self, endpoint: Endpoint, exc: TransientError) -> TransientError:
        """Count the failure against its endpoint; while another one is in rotation, retry there at once."""
        now = time.monotonic()
        endpoint.failed(exc, now)
        if all(e.retired_until > now for e in self._endpoints):
            return exc  # every endpoint is out: the client's breaker decides, as with one server
        return TransientError(f"{exc} (another endpoint takes the retry)", 0.0, cause=exc.cause)

    async def _post_to(self, endpoint: Endpoint, route: str, body: dict[str, Any]) -> Any:
        """The JSON answer, with the SDK's errors translated into what the client acts on."""
        where = endpoint.where()
        try:
            client = self._client_for(endpoint)
            if endpoint.direct is not None:
                return await endpoint.direct.post(route, body)
            return await client.post(route, body=body, cast_to=object)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(f"{where} rejected the API key from OPENAI_API_KEY "
                              f"(HTTP {exc.status_code}): {exc.message}") from exc
        except openai.NotFoundError as exc:
            model_key, section = self.params_keys
            model = getattr(self, "api_model", self.model)
            raise ConfigError(f"params: {model_key}: {model!r} or {section}.base_url {where} not found "
                              f"(HTTP 404; does base_url end in /v1?): {exc.message}") from exc
        except openai.APIStatusError as exc:
            raise status_error(exc, where) from exc
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise connection_error(exc, where) from exc
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            raise TransientError(f"malformed response: {exc}", cause="malformed") from exc

    def _where(self) -> str:
        return ", ".join(e.where() for e in self._endpoints)

    @property
    def endpoint(self) -> str:
        """Where requests go, for messages that must name it."""
        return self._where()

    def info(self) -> dict[str, Any]:
        """Per-endpoint answers and retirements, for the round stats (only with several endpoints)."""
        if len(self._endpoints) == 1:
            return {}
        return {"endpoints": {e.where(): {"answered": e.answered, "retired": e.retirements}
                              for e in self._endpoints}}

    async def aclose(self) -> None:
        for endpoint in self._endpoints:
            if endpoint.direct is not None:
                await endpoint.direct.aclose()
            if endpoint.client is not None:
                await endpoint.client.close()


class OpenAICompletionsProvider(OpenAIProvider):
    """Raw `/v1/completions` (eval generation): the request's one message is the prompt, verbatim.

    Not chat: a model is scored on exactly the prompt it was trained or asked with, never a
    server's chat template around it. `model` is the name the cache knows (it may carry the
    served weights' fingerprint), `api_model` the name sent. An empty text is an answer here
    (a model may stop at once, greedily, every time), so it is returned, not retried.
    """

    name = "openai-completions"
    params_keys = ("generate.api_model", "generate")

    def __init__(self, model: str, *, api_model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.api_model = api_model

    async def complete(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {"model": self.api_model, "prompt": request.messages[-1][1],
                                "temperature": request.temperature, "top_p": request.top_p,
                                "max_tokens": request.max_tokens, "seed": request.seed}
        if request.stop:
            body["stop"] = list(request.stop)
        return text_completion_from_json(await self._post("/completions", body))


def text_completion_from_json(data: Any) -> Completion:
    """Text, token usage and finish reason of a `/v1/completions` body (one choice)."""
    try:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(text=choice.get("text") or "", prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          finish_reason=choice.get("finish_reason"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientError(f"malformed response: no choices in {str(data)[:200]!r}",
                             cause="malformed") from exc


def status_error(exc: "openai.APIStatusError", where: str) -> Exception:
    """What an HTTP error status means for the client: retry it, give up on it, or stop."""
    status = exc.status_code
    if status == 429 and getattr(exc, "code", None) == "insufficient_quota":
        return EndpointDown(f"{where} refuses every request: quota exhausted (HTTP 429 insufficient_quota)")
    if status == 429:
        return TransientError(f"HTTP 429: {exc.message}", parse_retry_after(exc.response.headers),
                              cause="rate_limit", headers=exc.response.headers)
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientError(f"HTTP {status}: {exc.message}", parse_retry_after(exc.response.headers),
                              cause="timeout" if status == 408 else "server_error")
    return PermanentError(f"HTTP {status} from {where}: {exc.message}",
                          cause="invalid_request" if status in (400, 413, 422) else f"http_{status}")


def connection_error(exc: BaseException, where: str) -> TransientError:
    """Name the real cause buried in the SDK's exception chain (refused, DNS, timeout, reset)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, socket.gaierror):
            return TransientError(f"cannot resolve the host of evolver.base_url {where}: {link.strerror or link}",
                                  cause="dns", unreachable=True)
        if isinstance(link, ConnectionRefusedError):
            return TransientError(f"connection refused by {where} (evolver.base_url): is the server running "
                                  "on that host and port?", cause="refused", unreachable=True)
        if isinstance(link, ConnectionError) or type(link).__name__ in DISCONNECTED:
            return TransientError(f"connection to {where} broke: {type(link).__name__}: {link}", cause="connection")
        link = link.__cause__ or link.__context__
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"request to {where} timed out (llm.timeout_s)", cause="timeout")
    return TransientError(f"connection to {where} failed: {type(exc).__name__}: {exc}", cause="connection")


def completion_from_json(data: Any) -> Completion:
    """Text, token usage and finish reason of a chat completion body.

    A body without choices is garbled and an empty answer is a glitch, not an answer:
    both are retried and never cached.
    """
    try:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        completion = Completion(text=choice["message"].get("content") or "",
                                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                completion_tokens=int(usage.get("completion_tokens") or 0),
                                finish_reason=choice.get("finish_reason"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientError(f"malformed response: no choices in {str(data)[:200]!r}",
                             cause="malformed") from exc
    if not completion.text.strip():
        raise TransientError(f"empty completion (finish_reason={completion.finish_reason})", cause="empty")
    return completion
