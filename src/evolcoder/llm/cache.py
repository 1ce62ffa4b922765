"""The never-pay-twice store: a content-addressed SQLite cache of completions plus a call log.

Why SQLite: every stage (each a separate DVC subprocess, sometimes several at once) shares
one file, and a completion must be durable the moment it is paid for so a SIGKILL loses
nothing. WAL mode gives concurrent readers with one writer across processes, and each
paid completion is committed before the caller sees it (the answers that arrive in one
event-loop turn share one short transaction).
`synchronous=NORMAL` under WAL survives process death (the OS holds the pages); only a
power cut can lose the last few commits.

The `calls` table logs every call, cached or not (time, stage, provider, model, key,
tokens, latency, attempts, error and its cause, retries by cause), and `runs` each
stage's wall time, so `evolcoder cache stats` can report per-stage usage, failures and
cost. Log rows of cache hits are buffered and written with the next commit, because one
commit per free hit would make a fully cached re-run slower than it needs to be.

Only answers are stored: an empty text is never written, and rows with empty text left
by older versions are ignored on read and overwritten by the next real answer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.llm.base import ChatRequest, Completion

# The schema as numbered migrations, applied in order and recorded in `_migrations` (as
# simonw/llm does): a cache written by any earlier version opens and is brought up to date,
# and a new column or table is one more entry here. Each step must also be a no-op on a
# cache that already has its effect: caches written before this table existed have no
# record of the steps their own code ran.
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("m001_initial", [
        """CREATE TABLE IF NOT EXISTS completions (
            key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, request TEXT NOT NULL,
            text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            finish_reason TEXT, created REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stage TEXT NOT NULL,
            provider TEXT NOT NULL, model TEXT NOT NULL, key TEXT NOT NULL, cached INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_s REAL NOT NULL,
            attempts INTEGER NOT NULL, error TEXT)""",
        "CREATE INDEX IF NOT EXISTS calls_stage ON calls(stage)",
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT NOT NULL, started REAL NOT NULL,
            finished REAL NOT NULL, requests INTEGER NOT NULL, cache_hits INTEGER NOT NULL,
            failures INTEGER NOT NULL)"""]),
    ("m002_calls_cause_and_retries", ["ADD COLUMN calls.cause TEXT", "ADD COLUMN calls.retries TEXT"]),
    ("m003_calls_rate_limit_wait", ["ADD COLUMN calls.wait_s REAL"]),
]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations this cache lacks, in one write transaction; returns their names.

    `BEGIN IMMEDIATE` takes the write lock before reading `_migrations`, so stages opening
    one cache at the same moment apply each step once, in order.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        applied = []
        for name, steps in MIGRATIONS:
            if name in done:
                continue
            for step in steps:
                _apply(db, step)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            applied.append(name)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return applied


def _apply(db: sqlite3.Connection, step: str) -> None:
    """One statement; `ADD COLUMN table.column TYPE` adds the column unless it is there already."""
    if not step.startswith("ADD COLUMN "):
        db.execute(step)
        return
    target, kind = step.removeprefix("ADD COLUMN ").split(" ", 1)
    table, column = target.split(".")
    if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


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
    cause: str | None = None  # one word: rate_limit, server_error, timeout, refused, empty, ...
    retries: str | None = None  # JSON {cause: count} of the attempts that were retried
    wait_s: float = 0.0  # seconds spent waiting for the rate-limit buckets (not in latency_s)

    def row(self) -> tuple[Any, ...]:
        return (self.time or time.time(), self.stage, self.provider, self.model, self.key,
                int(self.cached), self.prompt_tokens, self.completion_tokens, self.latency_s,
                self.attempts, self.error, self.cause, self.retries, self.wait_s or None)


_INSERT_CALL = ("INSERT INTO calls (time, stage, provider, model, key, cached, prompt_tokens, "
                "completion_tokens, latency_s, attempts, error, cause, retries, wait_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_BLANK = "char(32, 9, 10, 13)"  # what Python's str.strip() removes from model text, in SQL
# A real answer replaces an empty one stored by an older version; a real one is never replaced.
_UPSERT = ("INSERT INTO completions VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
           "text=excluded.text, prompt_tokens=excluded.prompt_tokens, completion_tokens=excluded.completion_tokens, "
           "finish_reason=excluded.finish_reason, created=excluded.created WHERE trim(completions.text, " + _BLANK + ") = ''")


def _completion_row(key: str, provider: str, model: str, request: ChatRequest,
                    completion: Completion) -> tuple[Any, ...]:
    """A `completions` row, as `_UPSERT` takes it."""
    return (key, provider, model, request_json(request), completion.text, completion.prompt_tokens,
            completion.completion_tokens, completion.finish_reason, time.time())


def request_json(request: ChatRequest) -> str:
    """The request as the `completions.request` column stores it."""
    fields: dict[str, Any] = {"messages": [list(m) for m in request.messages], "temperature": request.temperature,
                              "top_p": request.top_p, "max_tokens": request.max_tokens, "seed": request.seed}
    if request.stop:
        fields["stop"] = list(request.stop)
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


class CompletionCache:
    """One connection per process, guarded by a lock so worker threads may share it."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, log_buffer: int = 512) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._group: list[tuple[tuple[Any, ...], tuple[Any, ...], asyncio.Future[None]]] = []
        self._log_buffer = log_buffer
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason FROM completions WHERE key=?",
                (key,)).fetchone()
        if row is None or not row[0].strip():  # empty text is a glitch an older version stored
            return None
        return Completion(text=row[0], prompt_tokens=row[1], completion_tokens=row[2], finish_reason=row[3])

    def put(self, key: str, provider: str, model: str, request: ChatRequest, completion: Completion,
            log: CallLog) -> None:
        """Store a paid completion and its log row in one committed transaction (empty text: log only)."""
        if not completion.text.strip():
            self.log(log)
            return
        row = _completion_row(key, provider, model, request, completion)
        with self._lock:
            self._write([row], [log.row()])

    async def put_soon(self, key: str, provider: str, model: str, request: ChatRequest, completion: Completion,
                       log: CallLog) -> None:
        """`put`, returning once committed, in one transaction with the answers of the same loop turn.

        At a few thousand answers a second one commit each was a sixth of the client's CPU
        per call; answers that arrive in the same event-loop iteration now share a commit.
        The caller still sees its answer only after it is on disk, so a kill loses only
        what was in flight.
        """
        if not completion.text.strip():
            self.log(log)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._group.append((_completion_row(key, provider, model, request, completion), log.row(), done))
        if len(self._group) == 1:
            loop.call_soon(self._commit_group)
        await asyncio.shield(done)  # a cancelled caller's answer is committed all the same

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        try:
            with self._lock:
                self._write([row for row, _, _ in group], [log for _, log, _ in group])
        except BaseException as exc:  # every waiter of this commit sees the error
            for _, _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, _, done in group:
            if not done.done():
                done.set_result(None)

    def put_many(self, rows: list[tuple[str, str, str, ChatRequest, Completion]], logs: list[CallLog]) -> None:
        """Store many paid completions (a downloaded batch) in one transaction; empty texts are skipped."""
        values = [_completion_row(key, provider, model, request, c) for key, provider, model, request, c in rows
                  if c.text.strip()]
        with self._lock:
            self._write(values, [entry.row() for entry in logs])

    def log(self, entry: CallLog, *, defer: bool = False) -> None:
        """Record a call; `defer` buffers it until the next commit (used for free cache hits)."""
        with self._lock:
            if defer and len(self._pending) < self._log_buffer:
                self._pending.append(entry.row())
                return
            self._write([], [entry.row()])

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._write([], [])

    def _write(self, completions: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]) -> None:
        """One transaction: upsert `completions`, insert the buffered log rows and `logs`."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if completions:
                self._db.executemany(_UPSERT, completions)
            self._db.executemany(_INSERT_CALL, self._pending + logs)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._pending = []

    def log_run(self, stage: str, started: float, finished: float, requests: int, cache_hits: int,
                failures: int) -> None:
        """Record one stage run's wall time (with the buffered hit rows) in one commit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO runs (stage, started, finished, requests, cache_hits, failures) "
                                 "VALUES (?,?,?,?,?,?)", (stage, started, finished, requests, cache_hits, failures))
                self._db.executemany(_INSERT_CALL, self._pending)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending = []

    def stats(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Per-stage totals: requests, hits, retries and failures by cause, tokens, latency, wall time.

        `request_seconds` sums each paid request's own time (from getting a concurrency slot
        to its answer, retries included); `wall_seconds` sums the stage runs' elapsed time.
        """
        self.flush()
        where, args = ("WHERE stage=?", (stage,)) if stage is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT stage, provider, model,"
                " SUM(cached=0), SUM(cached=1), SUM(error IS NOT NULL),"
                " SUM(CASE WHEN cached=0 AND attempts > 1 THEN attempts - 1 ELSE 0 END),"
                " SUM(CASE WHEN cached=0 THEN prompt_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=0 THEN completion_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=1 THEN prompt_tokens + completion_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached=0 THEN latency_s ELSE 0 END), MIN(time), MAX(time),"
                " SUM(wait_s > 0), SUM(COALESCE(wait_s, 0))"
                f" FROM calls {where} GROUP BY stage, provider, model ORDER BY MIN(time)", args).fetchall()
            causes = self._db.execute(f"SELECT stage, model, cause, retries FROM calls {where}"
                                      f"{' AND' if where else ' WHERE'} cached=0 AND"
                                      " (cause IS NOT NULL OR retries IS NOT NULL)", args).fetchall()
            runs = dict(((r[0]), r[1:]) for r in self._db.execute(
                f"SELECT stage, COUNT(*), SUM(finished - started) FROM runs {where} GROUP BY stage", args))
        names = ("stage", "provider", "model", "requests", "cache_hits", "failures", "retries", "prompt_tokens",
                 "completion_tokens", "saved_tokens", "request_seconds", "first", "last", "rate_limit_waits",
                 "rate_limit_wait_seconds")
        out = [dict(zip(names, r)) for r in rows]
        for row in out:
            failures: Counter[str] = Counter()
            retries: Counter[str] = Counter()
            for stage_name, model, cause, retried in causes:
                if (stage_name, model) != (row["stage"], row["model"]):
                    continue
                if cause:
                    failures[cause] += 1
                retries.update(json.loads(retried) if retried else {})
            row["failures_by_cause"] = dict(sorted(failures.items()))
            row["retries_by_cause"] = dict(sorted(retries.items()))
            count, wall = runs.get(row["stage"], (0, 0.0))
            row["runs"], row["wall_seconds"] = count, round(wall or 0.0, 3)
            row["request_seconds"] = round(row["request_seconds"] or 0.0, 3)
            row["rate_limit_waits"] = int(row["rate_limit_waits"] or 0)
            row["rate_limit_wait_seconds"] = round(row["rate_limit_wait_seconds"] or 0.0, 3)
        return out

    def count_completions(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM completions WHERE trim(text, {_BLANK}) != ''").fetchone()[0])

    def keys(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute(f"SELECT key FROM completions WHERE trim(text, {_BLANK}) != ''")}

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> "CompletionCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
