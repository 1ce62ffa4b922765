"""Load, validate and sample the seed instructions that evolution starts from.

Accepts what people actually have: a Code Alpaca JSON array, a JSONL file, a saved
`datasets` directory or a hub dataset id. Every record is checked before any LLM call,
and an error names the file and line so a 20k-record file can be fixed in one go.
Ids are content hashes, so the same instruction gets the same id in every run and
every downstream RNG draw keyed on it is reproducible.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.config import SeedConfig
from evolcoder.errors import DataError
from evolcoder.jsonio import read_jsonl
from evolcoder.records import seed_record


def _json_array(path: Path) -> Iterator[tuple[str, Any]]:
    """Elements of a top-level JSON array with the line each one starts on."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8") from None
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise DataError(f"{path}:1: expected a JSON array of records")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(f"{path}:{text.count(chr(10)) + 1}: unterminated JSON array")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        yield f"{path}:{line}", value


def _hf_dataset(path: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    local = Path(path)
    if local.is_dir():
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        try:
            ds = datasets.load_dataset(path, split=split)
        except Exception as exc:  # offline, unknown id, missing split: say which key to fix
            raise DataError(f"params: seed.path: {path!r} is not a file, and loading it as a Hugging Face "
                            f"dataset failed: {type(exc).__name__}: {exc}") from None
    for index, row in enumerate(ds):
        yield f"{path}[{index}]", row


def iter_raw(path: str, split: str = "train") -> Iterator[tuple[str, Any]]:
    """(location, raw record) from any supported seed source."""
    local = Path(path)
    if local.is_file():
        head = local.read_bytes()[:4096].lstrip()
        if head.startswith(b"["):
            yield from _json_array(local)
        else:
            for lineno, record in read_jsonl(local):
                yield f"{local}:{lineno}", record
        return
    yield from _hf_dataset(path, split)


def check_record(record: Any) -> str | None:
    """What is wrong with a seed record, or None when it is usable."""
    if not isinstance(record, dict):
        return f"expected an object with an 'instruction', got {type(record).__name__}"
    instruction = record.get("instruction")
    if not isinstance(instruction, str):
        return "'instruction' is missing or not a string"
    if not instruction.strip():
        return "'instruction' is empty"
    for key in ("input", "output"):
        if key in record and record[key] is not None and not isinstance(record[key], str):
            return f"'{key}' must be a string, got {type(record[key]).__name__}"
    return None


@dataclass
class SeedResult:
    records: list[dict[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def load_seed(cfg: SeedConfig) -> SeedResult:
    """Validate every record, drop exact duplicates, then sample `cfg.n` reproducibly."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped: list[str] = []
    read = duplicates = 0
    for where, raw in iter_raw(cfg.path, cfg.split):
        read += 1
        problem = check_record(raw)
        if problem:
            if cfg.on_error == "fail":
                raise DataError(f"{where}: {problem}")
            skipped.append(f"{where}: {problem}")
            continue
        instruction = raw["instruction"].strip()
        input = (raw.get("input") or "").strip()
        record = seed_record(instruction, input, (raw.get("output") or "").strip())
        if record["id"] in seen:
            duplicates += 1
            continue
        seen.add(record["id"])
        records.append(record)
    if not records:
        raise DataError(f"{cfg.path}: no usable seed records")
    if cfg.n and cfg.n < len(records):
        picked = sorted(random.Random(cfg.seed).sample(range(len(records)), cfg.n))
        records = [records[i] for i in picked]
    stats = {"read": read, "skipped": len(skipped), "duplicates": duplicates, "written": len(records)}
    return SeedResult(records=records, stats=stats, skipped=skipped)
