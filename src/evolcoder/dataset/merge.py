"""Merge the seed with every active round's survivors, dedup, and decontaminate.

Decontamination is what makes a pass@k number mean something: a training instruction
that shares a long word n-gram with a benchmark prompt, or names a distinctive benchmark
function, is dropped and counted by reason, so the report shows exactly what was removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from evolcoder.config import MergeConfig
from evolcoder.records import normalize

_TOKEN = re.compile(r"[a-z0-9_]+")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class ContaminationIndex:
    """Word n-grams and distinctive entry-point names of the benchmarks to protect."""

    n: int
    grams: dict[tuple[str, ...], str]  # n-gram -> benchmark name
    entry_points: dict[str, str]  # identifier -> benchmark name

    @classmethod
    def build(cls, texts: Iterable[tuple[str, str]], entry_points: Iterable[tuple[str, str]], n: int,
              min_entry_point_len: int = 10) -> "ContaminationIndex":
        grams: dict[tuple[str, ...], str] = {}
        for bench, text in texts:
            for gram in ngrams(words(text), n):
                grams.setdefault(gram, bench)
        names = {name: bench for bench, name in entry_points
                 if "_" in name and len(name) >= min_entry_point_len}
        return cls(n=n, grams=grams, entry_points=names)

    def check(self, text: str) -> str | None:
        """The reason `text` is contaminated, or None."""
        tokens = words(text)
        for gram in ngrams(tokens, self.n):
            if gram in self.grams:
                return f"{self.n}-gram overlap with {self.grams[gram]}"
        for token in set(tokens):
            if token in self.entry_points:
                return f"{self.entry_points[token]} entry point name"
        return None


def load_index(cfg: MergeConfig) -> ContaminationIndex:
    """Index the prompts of `cfg.decontaminate` benchmarks (all 974 MBPP tasks for `mbpp`)."""
    from evolcoder.eval.problems import load_benchmark

    texts: list[tuple[str, str]] = []
    names: list[tuple[str, str]] = []
    for bench in cfg.decontaminate:
        benchmark = load_benchmark("mbpp-full" if bench == "mbpp" else bench, cfg.data_dir)
        for problem in benchmark.problems:
            texts.append((bench, problem.prompt))
            if bench.startswith("humaneval"):
                names.append((bench, problem.entry_point))
    return ContaminationIndex.build(texts, names, cfg.ngram)


@dataclass
class MergeResult:
    records: list[dict[str, Any]]
    metrics: dict[str, Any]
    dropped: list[dict[str, Any]]


def merge(seed: list[dict[str, Any]], rounds: list[list[dict[str, Any]]],
          index: ContaminationIndex) -> MergeResult:
    """Seed first, then rounds in order; the first occurrence of an instruction wins."""
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for round_no, records in enumerate([seed, *rounds]):
        for record in records:
            key = normalize(record["instruction"]) + "\x00" + normalize(record.get("input", ""))
            if key in seen:
                reasons["duplicate"] += 1
                dropped.append({"id": record["id"], "reason": "duplicate"})
                continue
            seen.add(key)
            why = index.check(f"{record['instruction']}\n{record.get('input', '')}")
            if why is not None:
                reasons[why] += 1
                dropped.append({"id": record["id"], "reason": why})
                continue
            sources[f"round_{round_no}"] += 1
            kept.append({"id": record["id"], "instruction": record["instruction"],
                         "input": record.get("input", ""), "output": record.get("output", ""),
                         "round": record.get("round", round_no), "method": record.get("method"),
                         "parent_id": record.get("parent_id")})
    metrics = {
        "records_in": sum(map(len, [seed, *rounds])),
        "records_out": len(kept),
        "by_round": dict(sorted(sources.items())),
        "dropped": dict(sorted(reasons.items())),
        "dropped_total": sum(reasons.values()),
        "ngram": index.n,
    }
    return MergeResult(kept, metrics, dropped)

