"""Load, validate and sample the seed instructions that evolution starts from.

Accepts what people actually have: a Code Alpaca JSON array, a JSONL file, a saved
`datasets` directory or a hub dataset id. Every record is checked before any LLM call,
and an error names the file and line so a 20k-record file can be fixed in one go; with
`on_error: skip` bad records and undecodable JSONL lines are skipped and counted.

`fingerprint` identifies the source's content (a file's or directory's sha256) for the
metrics; DVC itself hashes `seed.path`, a dependency of the seed stage, so an unchanged run
runs nothing. A hub dataset has no file to hash: `export_hub` snapshots it, at a commit
that is recorded, to a JSONL file that `seed.path` then names and DVC versions.
Ids are content hashes, so the same instruction gets the same id in every run and
every downstream RNG draw keyed on it is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.config import SeedConfig
from evolcoder.errors import ConfigError, DataError
from evolcoder.jsonio import BadLine, file_sha256, jsonl_lines
from evolcoder.records import seed_record
from evolcoder.util.hubid import looks_like_hub_dataset

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow")


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


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """Records of a JSONL file by line; an undecodable line is yielded as a `BadLine`."""
    with open(path, "rb") as handle:
        for lineno, record in jsonl_lines(handle):
            yield f"{path}:{lineno}", record


def looks_like_hub_id(path: str) -> bool:
    """`owner/name` with no file suffix: what a Hugging Face dataset id looks like."""
    return looks_like_hub_dataset(path, LOCAL_SUFFIXES)


def _missing(path: str) -> ConfigError:
    return ConfigError(f"params: seed.path: {path!r} does not exist; expected a JSON/JSONL file, a saved "
                       "`datasets` directory or a Hugging Face dataset id such as sahil280114/codealpaca")


def _tree_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def hub_revision(repo_id: str) -> str:
    """The commit a hub dataset's `main` points at: asked of the hub, else read from the local cache."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    problem = "offline (HF_HUB_OFFLINE)"
    if not constants.HF_HUB_OFFLINE:
        try:
            return str(HfApi().dataset_info(repo_id).sha)
        except RepositoryNotFoundError:
            raise ConfigError(f"params: seed.path: {repo_id!r} is not a local path and no such dataset "
                              "exists on the Hugging Face hub") from None
        except Exception as exc:  # no network: fall back to what the cache last saw
            problem = f"{type(exc).__name__}: {exc}"
    ref = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}" / "refs" / "main"
    if ref.is_file():
        return ref.read_text(encoding="utf-8").strip()
    raise ConfigError(f"params: seed.path: cannot resolve hub dataset {repo_id!r} ({problem}) and it is not "
                      "in the local Hugging Face cache; go online once, or `evolcoder export-seed` it to a file")


def snapshot_name(repo_id: str) -> str:
    """Where `evolcoder export-seed` puts a hub dataset by default: data/seed/<owner>--<name>.jsonl."""
    return f"data/seed/{repo_id.replace('/', '--')}.jsonl"


def snapshot_hint(path: str) -> None:
    """Refuse a hub id as `seed.path` with the command that snapshots it.

    DVC can only hash files, and a stage that asks the hub on every run is never clean in
    `dvc status`; a snapshot file makes the seed data versioned and the run reproducible.
    """
    if not Path(path).exists() and looks_like_hub_id(path):
        raise ConfigError(f"params: seed.path: {path!r} is a Hugging Face dataset id, and the pipeline reads "
                          f"files (DVC hashes them): run `evolcoder export-seed {path} {snapshot_name(path)}` "
                          f"and set seed.path to {snapshot_name(path)} (README: updating a hub seed)")


def fingerprint(path: str) -> dict[str, str]:
    """What identifies the seed data's content: sha256 of a file or directory."""
    local = Path(path)
    if local.is_file():
        return {"kind": "file", "path": path, "sha256": file_sha256(local)}
    if local.is_dir():
        return {"kind": "dir", "path": path, "sha256": _tree_sha256(local)}
    snapshot_hint(path)
    raise _missing(path)


def export_hub(repo_id: str, split: str, revision: str | None) -> tuple[str, Iterator[tuple[str, Any]]]:
    """(the commit read, its records): a hub dataset at `revision`, else at what `main` is now."""
    revision = revision or hub_revision(repo_id)
    return revision, _hf_dataset(repo_id, split, revision)


def _hub_snapshot(repo_id: str, revision: str) -> str:
    """The dataset repo's files at `revision` (from the local cache when already there)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, repo_type="dataset", revision=revision)
    except Exception as exc:
        raise ConfigError(f"params: seed.path: hub dataset {repo_id!r} at {revision}: "
                          f"{type(exc).__name__}: {exc}") from None


def _hf_dataset(path: str, split: str, revision: str | None = None) -> Iterator[tuple[str, Any]]:
    import datasets

    local = Path(path)
    if revision is not None:
        ds = datasets.load_dataset(_hub_snapshot(path, revision), split=split)
    elif local.is_dir():
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        try:
            ds = datasets.load_dataset(path, split=split)
        except Exception as exc:  # offline, unknown id, missing split: say which key to fix
            raise ConfigError(f"params: seed.path: {path!r} is not a file, and loading it as a Hugging Face "
                            f"dataset failed: {type(exc).__name__}: {exc}") from None
    for index, row in enumerate(ds):
        yield f"{path}[{index}]", row


def iter_raw(path: str, split: str = "train", revision: str | None = None) -> Iterator[tuple[str, Any]]:
    """(location, raw record or BadLine) from any supported seed source; `revision` pins a hub id."""
    local = Path(path)
    if local.is_file():
        head = local.read_bytes()[:4096].lstrip()
        yield from _json_array(local) if head.startswith(b"[") else _jsonl(local)
        return
    if not local.is_dir() and not looks_like_hub_id(path):
        raise _missing(path)
    yield from _hf_dataset(path, split, revision)


def check_record(record: Any) -> str | None:
    """What is wrong with a seed record, or None when it is usable."""
    if isinstance(record, BadLine):
        return record.problem
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
    stats: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


MAX_LISTED_SKIPS = 1000  # metrics/seed.json lists at most this many skipped line numbers


def _line_of(where: str) -> int:
    """The line number of `file:line`, or the row index of `dataset[index]`."""
    tail = where[:-1].rsplit("[", 1)[-1] if where.endswith("]") else where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def load_seed(cfg: SeedConfig, source: dict[str, str] | None = None) -> SeedResult:
    """Validate every record, drop exact duplicates, then sample `cfg.n` reproducibly.

    `source` is the stage's `fingerprint`: a hub dataset is read at its recorded commit,
    and the fingerprint is kept in the stats so metrics/seed.json says what was read.
    """
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped: list[str] = []
    lines: list[int] = []
    reasons: Counter[str] = Counter()
    read = duplicates = 0
    revision = source.get("revision") if source and source.get("path") == cfg.path else None
    for where, raw in iter_raw(cfg.path, cfg.split, revision):
        read += 1
        problem = check_record(raw)
        if problem:
            if cfg.on_error == "fail":
                raise DataError(f"{where}: {problem}")
            skipped.append(f"{where}: {problem}")
            lines.append(_line_of(where))
            reasons[problem.split(":")[0].split(" (")[0]] += 1
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
    stats: dict[str, Any] = {"read": read, "skipped": len(skipped), "duplicates": duplicates,
                             "written": len(records)}
    if skipped:
        stats["skipped_lines"] = lines[:MAX_LISTED_SKIPS]
        stats["skipped_by_reason"] = dict(sorted(reasons.items()))
    if source:
        stats["source"] = source
    return SeedResult(records=records, stats=stats, skipped=skipped)
