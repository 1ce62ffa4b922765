"""Merge the seed with every active round's survivors: dedup, near-dedup, decontaminate.

Decontamination is what makes a pass@k number mean something, and near-duplicates are
what seed sets and parallel evolutions repeat, so both are done here with every drop
written down: records are offered in order (seed first, then by round), an exact copy of
an earlier instruction is a `duplicate`, a record that carries a benchmark item in its
instruction or its answer is `contaminated` (each detector counted: decontam.py), and one
whose instruction is a near-copy of an earlier kept record of another lineage is a
`near_duplicate` (dedup.py), listed with the record it lost to and their similarity.

The merge streams: kept and dropped records go to callbacks as they are decided, and
what is held per record is a 12-byte digest, a few token ids and its round (at 200k
records the old in-memory merge peaked at 2.35 GB). `merge.match` then subsamples the
evolved records to the seed's size (control.py), the paper's complexity-vs-quantity arm.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from evolcoder.config import MergeConfig
from evolcoder.dataset.decontam import ContaminationIndex, Decontaminator, build_decontaminator, ngrams, words
from evolcoder.dataset.dedup import NearDuplicateIndex, dedup_text, root_of, shingle_frequencies
from evolcoder.records import normalize

__all__ = ["ContaminationIndex", "MergeResult", "load_index", "merge", "merge_stream", "ngrams", "words"]

Row = dict[str, Any]


def load_index(cfg: MergeConfig) -> Decontaminator:
    """Index the `cfg.decontaminate` benchmarks (all 974 MBPP tasks for `mbpp`)."""
    from evolcoder.eval.problems import load_benchmark

    benchmarks = [load_benchmark("mbpp-full" if name == "mbpp" else name, cfg.data_dir)
                  for name in dict.fromkeys(cfg.decontaminate)]
    return build_decontaminator(benchmarks, cfg.ngram, cfg.code_kgram, cfg.code_containment,
                                cfg.code_min_kgrams, cfg.example_min_chars)


@dataclass
class MergeResult:
    records: list[Row]
    metrics: dict[str, Any]
    dropped: list[Row]
    kept_rounds: array = field(default_factory=lambda: array("i"))  # round of each kept record, in order
    kept_tokens: array = field(default_factory=lambda: array("q"))  # its training tokens (merge.match: tokens)


def _train_record(record: Row, round_no: int) -> Row:
    """The training fields; `tests` (execution-verified records) passes through when present."""
    row = {"id": record["id"], "instruction": record["instruction"], "input": record.get("input", ""),
           "output": record.get("output", ""), "round": record.get("round", round_no),
           "method": record.get("method"), "parent_id": record.get("parent_id")}
    if "tests" in record:
        row["tests"] = record["tests"]
    return row


def _digest(record: Row) -> bytes:
    """The exact-duplicate key: a digest of the normalised instruction + input, not the text."""
    key = normalize(record["instruction"]) + "\x00" + normalize(record.get("input", ""))
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).digest()


@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    benchmarks: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)


def _decide(record: Row, first_id: dict[bytes, str], checker: Decontaminator, near: NearDuplicateIndex,
            tally: _Tally) -> Row | None:
    """None when `record` is kept, else its dropped row (reason and what it lost to)."""
    row: Row = {"id": record["id"], "round": record.get("round")}
    key = _digest(record)
    if key in first_id:
        return {**row, "reason": "duplicate", "kept_id": first_id[key], "similarity": 1.0}
    first_id[key] = record["id"]
    if hits := checker.check(record):
        tally.reasons.update({h.reason for h in hits})
        tally.benchmarks.update({h.benchmark for h in hits})
        return {**row, "reason": "contaminated",
                "hits": [{"detector": h.detector, "field": h.field, "benchmark": h.benchmark, "detail": h.detail}
                         for h in hits]}
    hit = near.offer(dedup_text(record), record["id"], root_of(record), record.get("instruction", ""))
    if hit is None:
        return None
    return {**row, "reason": "near_duplicate", "kept_id": near.kept_ids[hit[0]], "similarity": round(hit[1], 4)}


def merge_stream(sources: list[Iterable[Row]], checker: Decontaminator, cfg: MergeConfig,
                 on_kept: Callable[[Row], None], on_dropped: Callable[[Row], None],
                 count_tokens: Callable[[Row], int] | None = None) -> MergeResult:
    """Seed first, then rounds in order; the earliest of any duplicate group is kept.

    `sources` are read twice (shingle frequencies first, for the rarest-first order of the
    near-duplicate index), so each must be re-iterable: a list, or a file reader.
    """
    frequencies = shingle_frequencies((dedup_text(r) for src in sources for r in src), cfg.shingle_size)
    near = NearDuplicateIndex(cfg.dedup_threshold, cfg.shingle_size, frequencies)
    del frequencies
    first_id: dict[bytes, str] = {}
    tally = _Tally()
    result = MergeResult([], {}, [])
    records_in = 0
    for round_no, records in enumerate(sources):
        for record in records:
            records_in += 1
            record = {**record, "round": record.get("round", round_no)}
            row = _decide(record, first_id, checker, near, tally)
            if row is None:
                tally.sources[f"round_{round_no}"] += 1
                result.kept_rounds.append(round_no)
                if count_tokens is not None:
                    result.kept_tokens.append(count_tokens(record))
                on_kept(_train_record(record, round_no))
            else:
                tally.counts[row["reason"]] += 1
                on_dropped(row)
    result.metrics = {
        "records_in": records_in,
        "records_out": len(result.kept_rounds),
        "by_round": dict(sorted(tally.sources.items())),
        "dropped": dict(sorted(tally.counts.items())),
        "dropped_total": sum(tally.counts.values()),
        "contamination": {"by_reason": dict(sorted(tally.reasons.items())),
                          "by_benchmark": dict(sorted(tally.benchmarks.items()))},
        "near_duplicates": {"measure": f"Jaccard of padded word {cfg.shingle_size}-shingle sets, the lower of "
                                       "instruction + input and instruction alone",
                            "threshold": cfg.dedup_threshold, "lineage": "records of the same root_id never compared"},
        "ngram": checker.text.n,
        "benchmarks": {name: src["sha256"] for name, src in sorted(checker.sources.items())},
    }
    return result


def merge(seed: list[Row], rounds: list[list[Row]], checker: Decontaminator, cfg: MergeConfig,
          count_tokens: Callable[[Row], int] | None = None) -> MergeResult:
    """`merge_stream` into lists, then `merge.match`'s subsample when one is asked for."""
    kept: list[Row] = []
    dropped: list[Row] = []
    result = merge_stream([seed, *rounds], checker, cfg, kept.append, dropped.append, count_tokens)
    result.records, result.dropped = kept, dropped
    if cfg.match is not None:
        from evolcoder.dataset.control import apply_control

        chosen, control = apply_control(result, cfg)
        result.records = [r for i, r in enumerate(kept) if i in chosen]
        result.metrics = {**result.metrics, "control": control}
    return result


class JsonlSource:
    """A JSONL file's records, re-read on every iteration (the merge reads its inputs twice)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self):  # type: ignore[no-untyped-def]
        from evolcoder.jsonio import read_jsonl

        return (record for _, record in read_jsonl(self.path))


def merge_to_files(sources: list[Iterable[Row]], checker: Decontaminator, cfg: MergeConfig, out: str,
                   dropped: str, count_tokens: Callable[[Row], int] | None = None) -> MergeResult:
    """The stage's merge: kept and dropped records written as they are decided, each file
    atomically (nothing half-written on failure); with `merge.match` the kept records go to
    a temporary file first and only the chosen subsample reaches `out`."""
    import os
    import tempfile

    from evolcoder.jsonio import atomic_open, dumps, read_jsonl

    def writer(handle: Any) -> Callable[[Row], None]:
        return lambda row: handle.write(dumps(row) + "\n")

    if cfg.match is None:
        with atomic_open(out) as kept_fh, atomic_open(dropped) as dropped_fh:
            return merge_stream(sources, checker, cfg, writer(kept_fh), writer(dropped_fh), count_tokens)
    from evolcoder.dataset.control import apply_control

    fd, tmp = tempfile.mkstemp(prefix=".all.", suffix=".jsonl.tmp", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    try:
        with atomic_open(dropped) as dropped_fh:  # renamed only once the control arm is drawn
            with atomic_open(tmp) as kept_fh:
                result = merge_stream(sources, checker, cfg, writer(kept_fh), writer(dropped_fh), count_tokens)
            chosen, control = apply_control(result, cfg)
            with atomic_open(out) as fh:
                for i, (_, row) in enumerate(read_jsonl(tmp)):
                    if i in chosen:
                        fh.write(dumps(row) + "\n")
    finally:
        os.unlink(tmp)
    result.metrics = {**result.metrics, "control": control}
    return result
