"""Content digests: of JSON data (canonical form), of files, of a set of files.

Why one module: cache keys, run fingerprints, record ids and model references each hashed
their data with their own spelling of "canonical JSON"; a second spelling of the same data
gives a second key, and a silently re-paid or mismatched cache. The spellings in use are
kept byte for byte (they key existing caches and data), and named here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def json_sha256(data: Any, *, ensure_ascii: bool = False) -> str:
    """sha256 hex of `data` as JSON with sorted keys and the default separators, UTF-8.

    `ensure_ascii=True` is the spelling of the fine-tune fingerprint (non-ASCII escaped)."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=ensure_ascii)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, read in 1 MiB blocks."""
    return _update(hashlib.sha256(), Path(path)).hexdigest()


def files_sha256(paths: Iterable[Path]) -> str:
    """One hash over several files, in name order: each file's name, then its bytes (model weights)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        _update(digest, path)
    return digest.hexdigest()


def _update(digest: Any, path: Path) -> Any:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def manifest(root: Path, small_bytes: int) -> list[list[Any]]:
    """[relative path, size, sha256 or None] of every file under `root`, in path order; only
    files of at most `small_bytes` are hashed (configs, tokenizers: weights are known by size)."""
    entries = []
    for file in sorted(f for f in root.rglob("*") if f.is_file()):
        size = file.stat().st_size
        entries.append([file.relative_to(root).as_posix(), size, file_sha256(file) if size <= small_bytes else None])
    return entries
