"""A loopback fake of OpenAI's Batch API on top of `fakeserver.FakeServer`.

Serves, besides the chat routes: `POST /v1/files` (multipart upload), `GET /v1/files/{id}/content`,
`POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches` (paginated: `limit`, `after`,
`has_more`) and `POST /v1/batches/{id}/cancel`. Lines are answered by the chat server's own
responder, so a batch's answers equal the online ones byte for byte, and every answered line
is appended to `completed` (by content key), where the tests check that nothing was answered
twice. A batch completes after `polls` retrieves.

Scripted trouble: `fail_lines` (a predicate on the line's body: that line ends in the error
file), `expire_next` (the next batch expires after answering only its first `expire_keep` lines),
`reject_next` (the next batch fails validation, with errors naming line numbers),
`stall_create` (the next create makes the batch, then holds its answer this many seconds) and
`hook(moment)` (called in the handler at `upload`, `create`, `created`, `retrieve`,
`content`: a test SIGKILLs its client there). `no_batch_api` makes /v1/batches a 404.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any

from fakeserver import FakeServer, Fault, _tokens, request_key


class FakeBatchServer(FakeServer):
    """FakeServer plus /v1/files and /v1/batches, with scripted failures and kill hooks."""

    def __init__(self, *args: Any, polls: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.polls = polls
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # batch ids, oldest first
        self.batch_lines: Counter[str] = Counter()  # custom_id -> times answered
        self.fail_lines: Callable[[dict[str, Any]], bool] | None = None
        self.expire_next = False
        self.expire_keep = 0
        self.reject_next = False
        self.stall_create = 0.0
        self.no_batch_api = False
        self.page_size = 100  # the most batches one list page holds, whatever `limit` asks
        self.hook: Callable[[str], None] | None = None
        self._seq = 0
        self._block = threading.Lock()
        loud = self._httpd.handle_error

        def quiet(request: Any, address: Any) -> None:  # a SIGKILLed client leaves a broken pipe behind
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                loud(request, address)

        self._httpd.handle_error = quiet  # type: ignore[method-assign]

    # -- batch machinery -----------------------------------------------------------
    def _id(self, prefix: str) -> str:
        with self._block:
            self._seq += 1
            return f"{prefix}-{self._seq:06d}"

    def _fire(self, moment: str) -> None:
        if self.hook is not None:
            self.hook(moment)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        batch_id = self._id("batch")
        lines = self.files[body["input_file_id"]].splitlines()
        batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                 "metadata": body.get("metadata"), "_polls": 0, "_expire": self.expire_next,
                 "_reject": self.reject_next}
        self.expire_next = self.reject_next = False
        with self._block:
            self.batches[batch_id] = batch
            self.order.append(batch_id)
        return batch

    def _advance(self, batch: dict[str, Any]) -> None:
        """One retrieve's worth of progress; on the last one the batch runs and ends."""
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        batch["_polls"] += 1
        if batch["_polls"] < self.polls:
            batch["status"] = "in_progress"
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()]
        if batch["_reject"]:
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [
                {"code": "invalid_value", "message": "max_tokens is too large", "param": "body.max_tokens",
                 "line": n} for n in (1, len(lines))]}
            return
        keep = self.expire_keep if batch["_expire"] else len(lines)
        out, err = [], []
        for n, line in enumerate(lines):
            if n >= keep:
                err.append({"id": f"req-{n}", "custom_id": line["custom_id"], "response": None,
                            "error": {"code": "batch_expired", "message": "expired before it was processed"}})
            elif self.fail_lines is not None and self.fail_lines(line["body"]):
                err.append({"id": f"req-{n}", "custom_id": line["custom_id"],
                            "response": {"status_code": 500, "body": {"error": {"message": "scripted"}}},
                            "error": None})
            else:
                out.append(self._answer_line(n, line))
        batch["status"] = "expired" if batch["_expire"] else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        if out:
            batch["output_file_id"] = self._store("".join(json.dumps(x) + "\n" for x in out).encode())
        if err:
            batch["error_file_id"] = self._store("".join(json.dumps(x) + "\n" for x in err).encode())

    def _answer_line(self, n: int, line: dict[str, Any]) -> dict[str, Any]:
        body = line["body"]
        messages = body.get("messages") or [{"role": "user", "content": str(body.get("prompt", ""))}]
        reply = self.responder(messages)
        fault = reply if isinstance(reply, Fault) else Fault(text=reply)
        text = fault.text or ""
        key = request_key(messages)
        with self._lock:
            self.completed.append(key)
        self.batch_lines[line["custom_id"]] += 1
        usage = {"prompt_tokens": sum(_tokens(m.get("content", "")) for m in messages),
                 "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if "messages" in body:
            choice = {"index": 0, "finish_reason": fault.finish_reason,
                      "message": {"role": "assistant", "content": text}}
            resp = {"id": f"cmpl-{key}", "object": "chat.completion", "model": body.get("model"),
                    "choices": [choice], "usage": usage}
        else:
            resp = {"id": f"cmpl-{key}", "object": "text_completion", "model": body.get("model"), "usage": usage,
                    "choices": [{"index": 0, "finish_reason": fault.finish_reason, "text": text}]}
        return {"id": f"req-{n}", "custom_id": line["custom_id"],
                "response": {"status_code": 200, "request_id": f"r{n}", "body": resp}, "error": None}

    def _store(self, data: bytes) -> str:
        file_id = self._id("file")
        self.files[file_id] = data
        return file_id

    def public(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def listing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Newest first, `limit` per page, `after` = the last id of the previous page."""
        limit = min(int(query.get("limit", ["20"])[0]), self.page_size)
        ids = list(reversed(self.order))
        after = query.get("after", [None])[0]
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start:start + limit]
        return {"object": "list", "data": [self.public(self.batches[i]) for i in page],
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None,
                "has_more": start + limit < len(ids)}

    # -- HTTP ------------------------------------------------------------------------
    def _handler_class(self) -> type:
        base = super()._handler_class()
        server = self

        class BatchHandler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802
                if not server.route_get(self):
                    super().do_GET()

            def do_POST(self) -> None:  # noqa: N802
                if not server.route_post(self):
                    super().do_POST()

        return BatchHandler

    def _count(self, route: str, body: dict[str, Any] | None = None) -> None:
        self._record(route, body)
        self._done(None)

    def route_get(self, h: Any) -> bool:
        """Batch and file reads; False: not ours (the chat server answers it)."""
        url = urllib.parse.urlparse(h.path)
        parts = url.path.rstrip("/").split("/")
        if url.path.startswith("/v1/batches") and self.no_batch_api:
            h._json(404, {"error": {"message": "no route", "type": "not_found"}})
        elif url.path.rstrip("/") == "/v1/batches":
            self._count("/v1/batches:list")
            h._json(200, self.listing(urllib.parse.parse_qs(url.query)))
        elif len(parts) == 4 and parts[2] == "batches" and parts[3] in self.batches:
            self._count("/v1/batches:retrieve")
            self._fire("retrieve")
            batch = self.batches[parts[3]]
            self._advance(batch)
            h._json(200, self.public(batch))
        elif len(parts) == 5 and parts[2] == "files" and parts[4] == "content" and parts[3] in self.files:
            self._count("/v1/files:content")
            self._fire("content")
            h._send(200, self.files[parts[3]], content_type="application/octet-stream")
        else:
            return False
        return True

    def route_post(self, h: Any) -> bool:
        """Upload, create and cancel; False: not ours."""
        path = h.path.rstrip("/")
        if path == "/v1/files":
            self._upload(h)
        elif path.startswith("/v1/batches") and self.no_batch_api:
            h._json(404, {"error": {"message": "no route", "type": "not_found"}})
        elif path == "/v1/batches":
            self._create_http(h)
        elif path.startswith("/v1/batches/") and path.endswith("/cancel"):
            _drain(h)
            batch = self.batches[path.split("/")[3]]
            if batch["status"] not in ("completed", "failed", "expired"):
                batch["status"] = "cancelled"
            h._json(200, self.public(batch))
        else:
            return False
        return True

    def _upload(self, h: Any) -> None:
        raw = _drain(h)
        self._count("/v1/files")
        self._fire("upload")
        head = f"Content-Type: {h.headers['Content-Type']}\r\n\r\n".encode()
        message = BytesParser(policy=policy.default).parsebytes(head + raw)
        data, purpose, name = b"", "", "upload.jsonl"
        for part in message.iter_parts():
            field = part.get_param("name", header="content-disposition")
            if field == "file":
                data = part.get_payload(decode=True) or b""
                name = part.get_filename() or name
            elif field == "purpose":
                purpose = (part.get_payload(decode=True) or b"").decode()
        file_id = self._store(data)
        h._json(200, {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                      "filename": name, "purpose": purpose, "status": "processed"})

    def _create_http(self, h: Any) -> None:
        body = json.loads(_drain(h) or b"{}")
        self._count("/v1/batches:create", body)
        self._fire("create")
        if body.get("input_file_id") not in self.files:
            h._json(400, {"error": {"message": "no such file", "type": "invalid_request_error"}})
            return
        batch = self._create(body)
        self._fire("created")
        stall, self.stall_create = self.stall_create, 0.0  # only the next create stalls
        time.sleep(stall)
        h._json(200, self.public(batch))


def _drain(h: Any) -> bytes:
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""

def main() -> None:
    """`python tests/fakebatch.py --port 0 [--polls N]`: prints `listening on URL` once ready."""
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI-compatible fake server with the Batch API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per online chat request")
    parser.add_argument("--polls", type=int, default=1, help="retrieves before a batch ends")
    args = parser.parse_args()
    server = FakeBatchServer(latency=args.latency, port=args.port, polls=args.polls)
    print(f"listening on {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
