"""A small but real OpenAI-compatible HTTP server for tests and benchmarks.

Tests must exercise the real `openai` client over real HTTP, so this serves
`POST /v1/chat/completions`, `POST /v1/completions` and `GET /v1/models` on 127.0.0.1
from a thread-per-connection stdlib server (keep-alive, large listen backlog), which
sustains dozens of concurrent requests each sleeping `latency` seconds without
serialising them.

Default answers are a pure function of the request's messages, so pipelines built on it
are deterministic: the evolution prompt gets back its question rewritten longer (a
sentence chosen by a hash of method and question), anything else gets a plausible answer
with a ```python block. Tests script faults or texts per request with `push(...)`, or
replace the answers with `responder(messages) -> str` (or a `Fault.reply(...)`, to set
its `finish_reason` too).

Fault modes for whole runs (the fault-injection suite): `chaos(rate, faults, seed)` makes
each chat request fail with probability `rate` with a fault drawn from `faults`;
`outage(fault, after=n)` answers `n` more requests normally, then sends `fault` to every
request until `recover()`. `Fault.drop()` closes the connection without a reply. Only
non-empty 200 answers count as `completed` (what a test means by "paid for").

`rate_limit(rpm)` enforces a requests-per-minute token bucket (one second of burst), as a
provider does for an API key: every chat/completions answer carries OpenAI's
`x-ratelimit-{limit,remaining,reset}-requests` headers, and a request over the limit gets
a 429 with those headers and no `Retry-After` (counted in `refused`). `kill()` stops
the server for good, dropping its open connections, as a crashed replica would.

Use in-process::

    with FakeServer(latency=0.05) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="x")
        srv.push(Fault.rate_limit(retry_after="1"), Fault.status(500), "canned text")
        ...
        assert srv.count("/v1/chat/completions") == 3

or as a subprocess (DVC stages run as subprocesses)::

    python tests/fakeserver.py --port 0 --latency 0.05 [--log requests.jsonl]

which prints `listening on http://127.0.0.1:PORT/v1` once ready. `GET /_stats` returns
the counts and the keys of completed requests; `POST /_script` queues faults given as
JSON (a list of Fault fields or strings); `POST /_chaos` and `POST /_outage` set the modes
(`remote_chaos`, `remote_outage`, `remote_recover`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EVOL_PREFIX = "Please increase the difficulty of the given programming test question a bit."
Messages = list[dict[str, str]]
Responder = Callable[[Messages], "str | Fault"]


@dataclass(frozen=True)
class Fault:
    """One scripted reply: an HTTP error, a stall, a malformed body, or a given text.

    Fields combine: `stall` seconds are slept first, then the status/body is sent.
    """

    status: int = 200
    retry_after: str | None = None
    stall: float = 0.0
    malformed: bool = False
    text: str | None = None
    finish_reason: str = "stop"  # "length": the reply was cut off at max_tokens
    body: str | None = None  # sent verbatim with `status` and `content_type`
    content_type: str = "application/json"
    drop: bool = False  # close the connection without any reply

    @classmethod
    def rate_limit(cls, retry_after: str | None = "0") -> "Fault":
        return cls(status=429, retry_after=retry_after)

    @classmethod
    def error(cls, status: int = 500) -> "Fault":
        return cls(status=status)

    @classmethod
    def hang(cls, seconds: float) -> "Fault":
        return cls(stall=seconds)

    @classmethod
    def bad_json(cls) -> "Fault":
        return cls(malformed=True)

    @classmethod
    def raw(cls, body: str, content_type: str = "application/json") -> "Fault":
        return cls(body=body, content_type=content_type)

    @classmethod
    def reply(cls, text: str, finish_reason: str = "stop") -> "Fault":
        return cls(text=text, finish_reason=finish_reason)

    @classmethod
    def empty(cls) -> "Fault":
        return cls(text="")

    @classmethod
    def drop_connection(cls) -> "Fault":
        return cls(drop=True)


def request_key(messages: Messages) -> str:
    """Stable identity of a request's content (what a test compares across runs)."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)


_CONSTRAINTS = [
    "The solution must also handle empty input gracefully and raise a ValueError with a descriptive message when an argument has the wrong type.",
    "Additionally, the function must not use any built-in sorting helpers and must process inputs of up to {n} elements.",
    "Inputs may now contain negative numbers, duplicates and Unicode strings, and the result must preserve the original relative order of equal items.",
    "The function must accept an optional keyword argument `strict` that, when true, rejects any value outside the range 0 to {n}.",
]
_RARE = [
    "Instead of returning a list, return a generator that yields results lazily, and document the exact order in which items are produced.",
    "Replace the plain integer inputs with timezone-aware datetime objects and compare them by their UTC offset.",
    "Rather than reading from a list, the input now arrives as a stream of byte chunks whose boundaries may split multibyte UTF-8 characters.",
]
_STEPS = [
    "First validate the input, then normalise it, then compute the answer, and finally verify the answer against a brute-force check for inputs smaller than {n}.",
    "Break the task into three functions: one that parses the input, one that transforms it, and one that formats the final report with aligned columns.",
    "Before computing the result, group the items by a key derived from their length, process each group independently and merge the partial results.",
]
_COMPLEXITY = [
    "The solution must run in O(n log n) time and use at most O(1) extra space besides the output.",
    "Your implementation must finish within linear time for inputs of up to {n} items and may not allocate a copy of the input.",
]
_CODE_BUGS = [
    "def solve(items):\n    result = []\n    for i in range(1, len(items)):\n        result.append(items[i] * 2)\n    return result",
    "def solve(data):\n    total = 0\n    for value in data:\n        total =+ value\n    return total / len(data)",
    "def solve(text):\n    words = text.split(' ')\n    return sorted(words, key=len)[0:-1]",
]


def _pick(options: Sequence[str], seed: int) -> str:
    return options[seed % len(options)].format(n=1000 + seed % 9000)


def evolve_text(method: str, question: str) -> str:
    """Rewrite `question` harder: deterministic in (method, question), always longer."""
    seed = _h(method + "\x00" + question)
    low = method.lower()
    if "erroneous code" in low:
        bug = _CODE_BUGS[seed % len(_CODE_BUGS)]
        extra = ("As a reference, the following attempt contains a subtle bug that you must find and "
                 f"avoid:\n\n```python\n{bug}\n```")
    elif "constraints" in low:
        extra = _pick(_CONSTRAINTS, seed)
    elif "less common" in low:
        extra = _pick(_RARE, seed)
    elif "reasoning steps" in low:
        extra = _pick(_STEPS, seed)
    elif "complexity" in low:
        extra = _pick(_COMPLEXITY, seed)
    else:
        extra = _pick(_CONSTRAINTS + _STEPS, seed)
    tag = f"Make sure your approach is explained step by step (variant {seed % 97})."
    return f"{question.strip()}\n\n{extra} {tag}"


def answer_text(prompt: str) -> str:
    """A plausible answer of at least 80 words with a ```python block, derived from `prompt`."""
    seed = _h(prompt)
    name = ["solve", "process_items", "compute_result", "transform"][seed % 4]
    factor = 2 + seed % 7
    words = prompt.split()
    topic = " ".join(words[:8]) if words else "the task"
    return (
        f"Here is a straightforward Python solution for the task ({topic}).\n\n"
        "```python\n"
        f"def {name}(values):\n"
        "    \"\"\"Return the transformed values, validating the input first.\"\"\"\n"
        "    if values is None:\n"
        "        raise ValueError(\"values must not be None\")\n"
        f"    return [v * {factor} for v in values if v is not None]\n"
        "```\n\n"
        f"The function `{name}` first checks that the input is present, because calling it with "
        "nothing is almost always a mistake that should be reported early rather than hidden. "
        f"It then walks through the values once, multiplies each one by {factor} and skips missing "
        "entries, which keeps the running time linear in the size of the input and the extra memory "
        "proportional to the output. You can test it with a few small lists, including an empty "
        "list, a list with missing values and a long list, to confirm that the behaviour matches the "
        "specification in every case described above."
    )


def default_responder(messages: Messages) -> str:
    """The deterministic default: evolve evolution prompts, answer everything else."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if user.startswith(EVOL_PREFIX):
        marker = "following methods:\n"
        rest = user.split(marker, 1)[1] if marker in user else ""
        method, _, question = rest.partition("\n\n")
        return evolve_text(method, question or user)
    return answer_text(user)


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # 32+ clients connect at once; the stdlib default backlog is 5
    daemon_threads = True  # a stalled handler must not block shutdown


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class FakeServer:
    """OpenAI-compatible server on 127.0.0.1 with scripted faults and request counting."""

    def __init__(self, latency: float = 0.0, responder: Responder | None = None,
                 host: str = "127.0.0.1", port: int = 0, log_path: str | None = None) -> None:
        self.latency = latency
        self.responder: Responder = responder or default_responder
        self._faults: deque[Fault | str] = deque()
        self._lock = threading.Lock()
        self.paths: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # every POST body, in arrival order
        self.completed: list[str] = []  # request_key of each 200 answer fully written
        self.in_flight = 0
        self.max_in_flight = 0
        self.injected: Counter[str] = Counter()  # faults sent by chaos/outage mode, by kind
        self._chaos: tuple[float, list[Fault], random.Random] | None = None
        self._outage: tuple[Fault, int] | None = None  # (fault, answers still allowed before it starts)
        self._bucket: list[float] | None = None  # [rpm, tokens, last refill (monotonic)]
        self.refused = 0  # requests answered 429 by the rate limit
        self.killed = False
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # -- scripting and inspection -------------------------------------------------
    def push(self, *items: Fault | str) -> None:
        """Queue replies for the next requests, in order; a str is a canned text answer."""
        with self._lock:
            self._faults.extend(items)

    def chaos(self, rate: float, faults: Sequence[Fault], seed: int = 0) -> None:
        """Each chat request fails with probability `rate`, with a fault drawn from `faults`."""
        with self._lock:
            self._chaos = (rate, list(faults), random.Random(seed)) if rate > 0 else None

    def outage(self, fault: Fault, after: int = 0) -> None:
        """Answer `after` more requests, then send `fault` to every request until `recover()`."""
        with self._lock:
            self._outage = (fault, after)

    def rate_limit(self, rpm: float | None) -> None:
        """Enforce `rpm` requests per minute (a bucket of one second's worth); None lifts it."""
        with self._lock:
            self._bucket = [float(rpm), rpm / 60.0, time.monotonic()] if rpm else None

    def _admit(self) -> tuple[bool, dict[str, str]]:
        """Take one request from the bucket: (admitted, OpenAI's rate-limit headers)."""
        with self._lock:
            if self._bucket is None:
                return True, {}
            rpm, tokens, last = self._bucket
            now = time.monotonic()
            rate = rpm / 60.0
            tokens = min(rate, tokens + (now - last) * rate)  # capacity: one second of the rate
            admitted = tokens >= 1.0
            if admitted:
                tokens -= 1.0
            else:
                self.refused += 1
            self._bucket = [rpm, tokens, now]
            reset_ms = int((rate - tokens) / rate * 1000)
            return admitted, {"x-ratelimit-limit-requests": str(int(rpm)),
                              "x-ratelimit-remaining-requests": str(int(tokens)),
                              "x-ratelimit-reset-requests": f"{reset_ms}ms"}

    def kill(self) -> None:
        """Die like a crashed server: open connections are dropped, new ones refused."""
        self.outage(Fault.drop_connection())
        self.killed = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def recover(self) -> None:
        with self._lock:
            self._outage = None
            self._chaos = None

    def count(self, path: str | None = None) -> int:
        """Requests received in total, or on one path such as `/v1/chat/completions`."""
        with self._lock:
            return sum(self.paths.values()) if path is None else self.paths[path]

    def reset_counts(self) -> None:
        with self._lock:
            self.paths.clear()
            self.requests.clear()
            self.completed.clear()
            self.max_in_flight = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"total": sum(self.paths.values()), "paths": dict(self.paths), "refused": self.refused,
                    "completed": list(self.completed), "max_in_flight": self.max_in_flight,
                    "pending_faults": len(self._faults), "injected": dict(self.injected)}

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> "FakeServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fakeserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self.killed:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._log:
            self._log.close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    # -- internals ----------------------------------------------------------------
    def _next_fault(self) -> Fault | str | None:
        """A scripted fault first, then the outage, then a chaos draw."""
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._outage is not None:
                fault, allowed = self._outage
                if allowed <= 0:
                    self.injected[_kind(fault)] += 1
                    return fault
                self._outage = (fault, allowed - 1)
            if self._chaos is not None:
                rate, faults, rng = self._chaos
                if rng.random() < rate:
                    fault = rng.choice(faults)
                    self.injected[_kind(fault)] += 1
                    return fault
            return None

    def _record(self, path: str, body: dict[str, Any] | None) -> None:
        with self._lock:
            self.paths[path] += 1
            if body is not None:
                self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _done(self, key: str | None) -> None:
        with self._lock:
            self.in_flight -= 1
            if key is not None:
                self.completed.append(key)
                if self._log:
                    self._log.write(json.dumps({"key": key, "t": time.time()}) + "\n")
                    self._log.flush()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the openai client pools connections
            disable_nagle_algorithm = True  # else headers+body writes hit the 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(data).encode("utf-8"), headers)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    server._record(self.path, None)
                    server._done(None)
                    self._json(200, {"object": "list", "data": [
                        {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fakeserver"}]})
                elif self.path == "/_stats":
                    self._json(200, server.stats())
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
                    return
                path = self.path.rstrip("/")
                if path == "/_script":
                    items = [Fault(**x) if isinstance(x, dict) else str(x) for x in body]
                    server.push(*items)
                    self._json(200, {"queued": len(items)})
                    return
                if path == "/_chaos":
                    server.chaos(body["rate"], [Fault(**x) for x in body["faults"]], body.get("seed", 0))
                    self._json(200, {"ok": True})
                    return
                if path == "/_outage":
                    if body.get("fault") is None:
                        server.recover()
                    else:
                        server.outage(Fault(**body["fault"]), body.get("after", 0))
                    self._json(200, {"ok": True})
                    return
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                server._record(path, body)
                key = None
                try:
                    key = self._answer(path, body)
                except (BrokenPipeError, ConnectionResetError):
                    key = None  # the client gave up (e.g. its timeout fired during a stall)
                finally:
                    server._done(key)

            def _answer(self, path: str, body: dict[str, Any]) -> str | None:
                chat = path.endswith("chat/completions")
                messages: Messages = body.get("messages") or [
                    {"role": "user", "content": str(body.get("prompt", ""))}]
                admitted, limits = server._admit()
                if not admitted:
                    self._json(429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                               "code": "rate_limit_exceeded"}}, limits)
                    return None
                fault = server._next_fault()
                if isinstance(fault, str):
                    fault = Fault(text=fault)
                fault = fault or Fault()
                time.sleep(server.latency + fault.stall)
                if fault.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if fault.status != 200:
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    if fault.body is not None:
                        self._send(fault.status, fault.body.encode("utf-8"), headers, fault.content_type)
                        return None
                    self._json(fault.status, {"error": {"message": f"scripted {fault.status}",
                                                        "type": "server_error", "code": fault.status}}, headers)
                    return None
                if fault.malformed:
                    self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess')
                    return None
                if fault.body is not None:
                    self._send(200, fault.body.encode("utf-8"), content_type=fault.content_type)
                    return None
                if fault.text is None:
                    reply = server.responder(messages)
                    fault = reply if isinstance(reply, Fault) else Fault(text=reply)
                text = fault.text or ""
                key = request_key(messages)
                usage = {"prompt_tokens": sum(_tokens(m.get("content", "")) for m in messages),
                         "completion_tokens": _tokens(text)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                common = {"id": f"cmpl-{key}", "created": int(time.time()),
                          "model": body.get("model", "fake-model"), "usage": usage}
                if chat:
                    choice = {"index": 0, "finish_reason": fault.finish_reason,
                              "message": {"role": "assistant", "content": text}}
                    self._json(200, {**common, "object": "chat.completion", "choices": [choice]}, limits)
                else:
                    choice = {"index": 0, "finish_reason": fault.finish_reason, "text": text, "logprobs": None}
                    self._json(200, {**common, "object": "text_completion", "choices": [choice]}, limits)
                return key if text.strip() else None

        return Handler


def _kind(fault: Fault) -> str:
    if fault.drop:
        return "drop"
    if fault.stall:
        return "stall"
    if fault.malformed:
        return "malformed"
    if fault.status != 200:
        return f"http_{fault.status}"
    if fault.body is not None:
        return "body"
    return "empty" if fault.text is not None and not fault.text.strip() else "text"


def fault_dicts(items: Iterable[Fault | str]) -> list[Any]:
    """Faults as JSON for `POST /_script` when the server runs as a subprocess."""
    return [asdict(x) if isinstance(x, Fault) else x for x in items]


@contextlib.contextmanager
def subprocess_server(latency: float = 0.0, log_path: str | None = None, rpm: float = 0.0) -> Iterator[str]:
    """Run this file as a separate process (its own core and GIL); yields the base URL."""
    cmd = [sys.executable, __file__, "--port", "0", "--latency", str(latency), "--rpm", str(rpm)]
    if log_path:
        cmd += ["--log", log_path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"fakeserver did not start: {line!r}")
        yield line.split("listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def remote_stats(base_url: str) -> dict[str, Any]:
    """`GET /_stats` of a subprocess server."""
    with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/_stats", timeout=10) as resp:
        return json.loads(resp.read())


def remote_push(base_url: str, *items: Fault | str) -> None:
    """Queue faults on a subprocess server (`POST /_script`)."""
    data = json.dumps(fault_dicts(items)).encode("utf-8")
    req = urllib.request.Request(base_url.rsplit("/v1", 1)[0] + "/_script", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def _control(base_url: str, path: str, payload: Any) -> None:
    req = urllib.request.Request(base_url.rsplit("/v1", 1)[0] + path, data=json.dumps(payload).encode("utf-8"),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def remote_chaos(base_url: str, rate: float, faults: Sequence[Fault], seed: int = 0) -> None:
    """`FakeServer.chaos` on a subprocess server."""
    _control(base_url, "/_chaos", {"rate": rate, "faults": fault_dicts(faults), "seed": seed})


def remote_outage(base_url: str, fault: Fault, after: int = 0) -> None:
    """`FakeServer.outage` on a subprocess server."""
    _control(base_url, "/_outage", {"fault": asdict(fault), "after": after})


def remote_recover(base_url: str) -> None:
    """End a subprocess server's outage and chaos."""
    _control(base_url, "/_outage", {"fault": None})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake server for evolcoder tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep per request")
    parser.add_argument("--log", default=None, help="append the key of every completed request here")
    parser.add_argument("--rpm", type=float, default=0.0, help="enforce this many requests/min (429 beyond)")
    args = parser.parse_args(argv)
    server = FakeServer(latency=args.latency, host=args.host, port=args.port, log_path=args.log)
    server.rate_limit(args.rpm or None)
    print(f"listening on http://{args.host}:{server.port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass

if __name__ == "__main__":
    sys.exit(main())
