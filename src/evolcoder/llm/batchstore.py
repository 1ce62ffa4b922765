"""The batch ledger: every submission's intent, recorded in the cache database before upload.

Why a ledger, and why before the upload: a process can die at any instant between writing
a batch file and learning the batch's id. The intent row (tag, file hash, one row per
request line with its cache key) is committed first; the upload and `batches.create`
follow, each result recorded as it arrives. A restart then knows every submission it may
have made: one with an id is polled, one without is looked up by its tag in
`batches.list` (the tag travels in the batch's metadata) and adopted if the provider has
it, or abandoned (never created, so nothing was billed) and its lines become misses again.
The ledger lives in the same SQLite file as the completions, on its own connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    tag TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    url TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    reserved_usd REAL NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    file_id TEXT,
    batch_id TEXT,
    status TEXT,
    errors TEXT,
    pid INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    tag TEXT NOT NULL,
    line INTEGER NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (tag, line)
);
CREATE INDEX IF NOT EXISTS batch_lines_key ON batch_lines(key);
"""
OPEN_STATES = ("intent", "uploaded", "submitted")  # done and abandoned jobs are history


@dataclass(frozen=True)
class Job:
    """One submission as the ledger knows it."""

    tag: str
    stage: str
    lines: int
    state: str
    file_id: str | None
    batch_id: str | None
    status: str | None
    pid: int | None
    reserved_usd: float


def pid_alive(pid: int | None) -> bool:
    """Whether another live process on this machine owns a submission (it may still create it)."""
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BatchStore:
    """Ledger rows in the cache file; each change is its own committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def record_intent(self, tag: str, *, endpoint: str, stage: str, model: str, url: str, sha256: str,
                      nbytes: int, keys: list[str], reserved_usd: float) -> None:
        """The submission as it is about to be uploaded: committed before any byte leaves."""
        now = time.time()
        with self._tx():
            self._db.execute("INSERT INTO batch_jobs (tag, endpoint, stage, model, url, sha256, lines, bytes, "
                             "reserved_usd, state, pid, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                             (tag, endpoint, stage, model, url, sha256, len(keys), nbytes, reserved_usd,
                              "intent", os.getpid(), now, now))
            self._db.executemany("INSERT INTO batch_lines (tag, line, key, state) VALUES (?,?,?,'pending')",
                                 [(tag, i + 1, key) for i, key in enumerate(keys)])

    def set_file(self, tag: str, file_id: str) -> None:
        self._update(tag, state="uploaded", file_id=file_id)

    def set_batch(self, tag: str, batch_id: str, status: str | None) -> None:
        self._update(tag, state="submitted", batch_id=batch_id, status=status)

    def set_status(self, tag: str, status: str) -> None:
        self._update(tag, status=status)

    def abandon(self, tag: str) -> None:
        """Never created at the provider (nothing billed): its lines are misses again."""
        with self._tx():
            self._db.execute("UPDATE batch_jobs SET state='abandoned', updated=? WHERE tag=?", (time.time(), tag))
            self._db.execute("UPDATE batch_lines SET state='abandoned' WHERE tag=? AND state='pending'", (tag,))

    def finish(self, tag: str, status: str, done: set[str], failed: dict[str, str],
               errors: list[dict] | None = None) -> None:
        """The batch's answers are in the cache: mark its lines, and the job as history."""
        with self._tx():
            self._db.executemany("UPDATE batch_lines SET state='done' WHERE tag=? AND key=?",
                                 [(tag, k) for k in done])
            self._db.executemany("UPDATE batch_lines SET state='failed', error=? WHERE tag=? AND key=?",
                                 [(err[:2000], tag, k) for k, err in failed.items()])
            self._db.execute("UPDATE batch_lines SET state='failed', error=COALESCE(error, 'no answer') "
                             "WHERE tag=? AND state='pending'", (tag,))
            self._db.execute("UPDATE batch_jobs SET state='done', status=?, errors=?, updated=? WHERE tag=?",
                             (status, json.dumps(errors) if errors else None, time.time(), tag))

    def open_jobs(self, endpoint: str) -> list[Job]:
        rows = self._db.execute(
            "SELECT tag, stage, lines, state, file_id, batch_id, status, pid, reserved_usd FROM batch_jobs "
            f"WHERE endpoint=? AND state IN {OPEN_STATES} ORDER BY created", (endpoint,)).fetchall()
        return [Job(*row) for row in rows]

    def keys(self, tag: str) -> list[str]:
        """The job's request keys in file order (line N is index N-1)."""
        return [r[0] for r in self._db.execute("SELECT key FROM batch_lines WHERE tag=? ORDER BY line", (tag,))]

    def pending_keys(self, endpoint: str) -> set[str]:
        """Keys in submissions still open: never submit these again."""
        return {r[0] for r in self._db.execute(
            "SELECT l.key FROM batch_lines l JOIN batch_jobs j ON j.tag = l.tag "
            f"WHERE j.endpoint=? AND j.state IN {OPEN_STATES} AND l.state='pending'", (endpoint,))}

    def _update(self, tag: str, **fields: object) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx():
            self._db.execute(f"UPDATE batch_jobs SET {sets}, updated=? WHERE tag=?",
                             (*fields.values(), time.time(), tag))

    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    def close(self) -> None:
        self._db.close()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
