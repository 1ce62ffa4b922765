"""JSON/JSONL reading and writing with the two guarantees the pipeline relies on.

Stage outputs are written to a temporary name and renamed into place, so DVC never
mistakes a half-written file for an output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, IO

import jsonlines

from evolcoder.errors import DataError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[str]]:
    """Open a temporary sibling of `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dumps(record: Any) -> str:
    """Canonical one-line JSON: stable key order so identical data gives identical bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Atomically write records as canonical JSONL; returns the number written."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            handle.write(dumps(record) + "\n")
            count += 1
    return count


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write pretty JSON (metrics files are read by people and by `dvc metrics`)."""
    with atomic_open(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")


def read_jsonl(path: str | Path, *, skip_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record); a bad line raises DataError naming `file:line`.

    Blank lines are ignored. With `skip_bad`, undecodable lines are skipped silently by
    this function, so callers that must count them should validate themselves.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if skip_bad:
                    continue
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                if skip_bad:
                    continue
                raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, recorded beside what was made from it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
