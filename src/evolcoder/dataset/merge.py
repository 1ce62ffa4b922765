"""Merge the seed with every active round's survivors: dedup, near-dedup, decontaminate.

Decontamination is what makes a pass@k number mean something, and near-duplicates are
what evolution produces by design, so both are done here with every drop written down:
records are offered in order (seed first, then by round), an exact copy of an earlier
instruction is a `duplicate`, a record that carries a benchmark item in its instruction
or its answer is `contaminated` (each detector counted: decontam.py), and one whose
instruction is a near-copy of an earlier kept record is a `near_duplicate` (dedup.py),
listed with the record it lost to and their similarity.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from evolcoder.config import MergeConfig
from evolcoder.dataset.decontam import ContaminationIndex, Decontaminator, build_decontaminator, ngrams, words
from evolcoder.dataset.dedup import NearDuplicateIndex, dedup_text
from evolcoder.records import normalize

__all__ = ["ContaminationIndex", "MergeResult", "load_index", "merge", "ngrams", "words"]


def load_index(cfg: MergeConfig) -> Decontaminator:
    """Index the `cfg.decontaminate` benchmarks (all 974 MBPP tasks for `mbpp`)."""
    from evolcoder.eval.problems import load_benchmark

    benchmarks = [load_benchmark("mbpp-full" if name == "mbpp" else name, cfg.data_dir)
                  for name in dict.fromkeys(cfg.decontaminate)]
    return build_decontaminator(benchmarks, cfg.ngram, cfg.code_kgram, cfg.code_containment,
                                cfg.code_min_kgrams, cfg.example_min_chars)


@dataclass
class MergeResult:
    records: list[dict[str, Any]]
    metrics: dict[str, Any]
    dropped: list[dict[str, Any]]


def _train_record(record: dict[str, Any], round_no: int) -> dict[str, Any]:
    """The training fields; `tests` (execution-verified records) passes through when present."""
    row = {"id": record["id"], "instruction": record["instruction"], "input": record.get("input", ""),
           "output": record.get("output", ""), "round": record.get("round", round_no),
           "method": record.get("method"), "parent_id": record.get("parent_id")}
    if "tests" in record:
        row["tests"] = record["tests"]
    return row


def merge(seed: list[dict[str, Any]], rounds: list[list[dict[str, Any]]], checker: Decontaminator,
          cfg: MergeConfig) -> MergeResult:
    """Seed first, then rounds in order; the earliest of any duplicate group is kept."""
    first_id: dict[str, str] = {}
    near = NearDuplicateIndex(cfg.dedup_threshold, cfg.shingle_size, cfg.num_perm, cfg.minhash_seed)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    benchmarks: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for round_no, records in enumerate([seed, *rounds]):
        for record in records:
            row = {"id": record["id"], "round": record.get("round", round_no)}
            key = normalize(record["instruction"]) + "\x00" + normalize(record.get("input", ""))
            if key in first_id:
                row.update(reason="duplicate", kept_id=first_id[key], similarity=1.0)
            elif hits := checker.check(record):
                first_id[key] = record["id"]
                row.update(reason="contaminated", hits=[{"detector": h.detector, "field": h.field,
                                                         "benchmark": h.benchmark, "detail": h.detail}
                                                        for h in hits])
                reasons.update({h.reason for h in hits})
                benchmarks.update({h.benchmark for h in hits})
            else:
                first_id[key] = record["id"]
                hit = near.offer(dedup_text(record))
                if hit is None:
                    sources[f"round_{round_no}"] += 1
                    kept.append(_train_record(record, round_no))
                    continue
                row.update(reason="near_duplicate", kept_id=kept[hit[0]]["id"], similarity=round(hit[1], 4))
            counts[row["reason"]] += 1
            dropped.append(row)
    metrics = {
        "records_in": sum(map(len, [seed, *rounds])),
        "records_out": len(kept),
        "by_round": dict(sorted(sources.items())),
        "dropped": dict(sorted(counts.items())),
        "dropped_total": sum(counts.values()),
        "contamination": {"by_reason": dict(sorted(reasons.items())),
                          "by_benchmark": dict(sorted(benchmarks.items()))},
        "ngram": checker.text.n,
        "benchmarks": {name: src["sha256"] for name, src in sorted(checker.sources.items())},
    }
    return MergeResult(kept, metrics, dropped)
