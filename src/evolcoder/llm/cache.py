"""The never-pay-twice store: a content-addressed SQLite cache of completions plus a call log.

Why SQLite: every stage (each a separate DVC subprocess, sometimes several at once) shares
one file, and a completion must be durable the moment it is paid for so a SIGKILL loses
nothing. WAL mode gives concurrent readers with one writer across processes, and each
paid completion is committed in its own short transaction before the caller sees it.
`synchronous=NORMAL` under WAL survives process death (the OS holds the pages); only a
power cut can lose the last few commits.

The `calls` table logs every call, cached or not (time, stage, provider, model, key,
tokens, latency, attempts, error), so `evolcoder cache stats` can report per-stage usage
and cost. Log rows of cache hits are buffered and written with the next commit, because
one commit per free hit would make a fully cached re-run slower than it needs to be.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.llm.base import ChatRequest, Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    stage TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    cached INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS calls_stage ON calls(stage);
"""


@dataclass(frozen=True)
class CallLog:
    """One row of the `calls` table."""

    stage: str
    provider: str
    model: str
    key: str
    cached: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    time: float = 0.0

    def row(self) -> tuple[Any, ...]:
        return (self.time or time.time(), self.stage, self.provider, self.model, self.key,
                int(self.cached), self.prompt_tokens, self.completion_tokens, self.latency_s,
                self.attempts, self.error)


_INSERT_CALL = ("INSERT INTO calls (time, stage, provider, model, key, cached, prompt_tokens, "
                "completion_tokens, latency_s, attempts, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


class CompletionCache:
    """One connection per process, guarded by a lock so worker threads may share it."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, log_buffer: int = 512) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._log_buffer = log_buffer
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)  # idempotent, so racing processes may all run it

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason FROM completions WHERE key=?",
                (key,)).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], prompt_tokens=row[1], completion_tokens=row[2], finish_reason=row[3])

    def put(self, key: str, provider: str, model: str, request: ChatRequest, completion: Completion,
            log: CallLog) -> None:
        """Store a paid completion and its log row in one committed transaction."""
        req = json.dumps({"messages": [list(m) for m in request.messages], "temperature": request.temperature,
                          "top_p": request.top_p, "max_tokens": request.max_tokens, "seed": request.seed},
                         ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._write(lambda db: db.execute(
                "INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?,?)",
                (key, provider, model, req, completion.text, completion.prompt_tokens,
                 completion.completion_tokens, completion.finish_reason, time.time())), log)

    def log(self, entry: CallLog, *, defer: bool = False) -> None:
        """Record a call; `defer` buffers it until the next commit (used for free cache hits)."""
        with self._lock:
            if defer and len(self._pending) < self._log_buffer:
                self._pending.append(entry.row())
                return
            self._write(None, entry)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._write(None, None)

    def _write(self, action: Any, entry: CallLog | None) -> None:
        rows = self._pending + ([entry.row()] if entry else [])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if action is not None:
                action(self._db)
            self._db.executemany(_INSERT_CALL, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._pending = []

    def stats(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Per-stage totals from the call log: requests, hits, failures, tokens, latency."""
        self.flush()
        where, args = ("WHERE stage=?", (stage,)) if stage is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT stage, provider, model,"
                " SUM(cached=0), SUM(cached=1), SUM(error IS NOT NULL),"
                " SUM(CASE WHEN cached=0 THEN prompt_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=0 THEN completion_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=1 THEN prompt_tokens + completion_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=0 THEN latency_s ELSE 0 END), MIN(time), MAX(time)"
                f" FROM calls {where} GROUP BY stage, provider, model ORDER BY MIN(time)", args).fetchall()
        names = ("stage", "provider", "model", "requests", "cache_hits", "failures", "prompt_tokens",
                 "completion_tokens", "saved_tokens", "request_seconds", "first", "last")
        return [dict(zip(names, r)) for r in rows]

    def count_completions(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def keys(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT key FROM completions")}

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> "CompletionCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
