"""JSON/JSONL reading and writing with the two guarantees the pipeline relies on.

Stage outputs are written to a temporary name and renamed into place
(`evolcoder.util.atomic`), so DVC never mistakes a half-written file for an output; and a
bad line of any JSONL input is reported as `file:line` with what is wrong. JSONL goes
through the `jsonlines` package, the one reader and writer for every wing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import jsonlines

from evolcoder.errors import DataError
from evolcoder.util.atomic import atomic_open  # noqa: F401  (re-exported: the writers' one door)
from evolcoder.util.hashing import file_sha256  # noqa: F401  (re-exported: content hashes of inputs)


def dumps(record: Any) -> str:
    """Canonical one-line JSON: stable key order so identical data gives identical bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Atomically write records as canonical JSONL (through `jsonlines`); returns the number written."""
    count = 0
    with atomic_open(path) as handle, jsonlines.Writer(handle, dumps=dumps) as writer:
        for record in records:
            writer.write(record)
            count += 1
    return count


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write pretty JSON (metrics files are read by people and by `dvc metrics`)."""
    with atomic_open(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")


@dataclass(frozen=True)
class BadLine:
    """A line that is not a record at all (not UTF-8, not JSON), and why."""

    problem: str


def jsonl_lines(handle: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, record) for every non-blank line, decoded by `jsonlines`; a line that
    does not decode comes as a `BadLine`, so the caller decides to stop, skip or report."""
    reader = jsonlines.Reader(handle, loads=json.loads)  # json's messages, as before
    lineno = 0
    while True:
        lineno += 1
        try:
            yield lineno, reader.read(allow_none=True)
        except EOFError:
            return
        except jsonlines.InvalidLineError as exc:
            if not exc.line.strip():
                continue
            yield exc.lineno, BadLine(_why(exc))


def _why(exc: jsonlines.InvalidLineError) -> str:
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"not valid UTF-8 ({cause.reason} at byte {cause.start})"
    if isinstance(cause, json.JSONDecodeError):
        return f"invalid JSON: {cause.msg} (column {cause.colno})"
    return str(exc)


def read_jsonl(path: str | Path | IO[bytes], *, skip_bad: bool = False,
               name: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record); a bad line raises DataError naming `file:line`.

    Blank lines are ignored. With `skip_bad`, undecodable lines are skipped silently by
    this function, so callers that must count them should validate themselves. `path` may
    be an open binary stream, then named `name` in errors.
    """
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(open(path, "rb")) if isinstance(path, (str, Path)) else path
        where = name or str(path)
        for lineno, record in jsonl_lines(handle):
            if isinstance(record, BadLine):
                if skip_bad:
                    continue
                raise DataError(f"{where}:{lineno}: {record.problem}")
            yield lineno, record
