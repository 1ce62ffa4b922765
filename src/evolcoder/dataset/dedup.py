"""Lineage-aware near-duplicate removal: exact Jaccard over word shingles, prefix-filtered.

Evolution makes near-copies by design: an evolved instruction is its parent plus a
sentence. Those are the point of the recipe, so two records of the same lineage (same
`root_id`: a seed and everything evolved from it) are never near-duplicates of each
other. Between different roots the check is strict enough to catch what a seed set or
parallel evolutions repeat: a format variant, a one-word edit of a long instruction, a
few synonyms (benchmarks/bench_decontam.py measures each kind and the false drops on
clean Code Alpaca: boundary-padded word bigrams at 0.65 catch every one-word edit of a
>= 15-word instruction, where unpadded word 3-shingles at 0.8 caught about a fifth).

Candidates come from prefix filtering (Chaudhuri et al. 2006, as in SSJoin/PPJoin): with
tokens ordered rarest first, two sets with Jaccard >= t share a token among the first
|x| - ceil(t|x|) + 1 of each, so only those few tokens are indexed. Every candidate is
confirmed with the exact Jaccard, so the result is exact and deterministic, no hashing
luck involved. Memory is what the issue at 100k seeds asks for: per kept record a few
int32 token ids and a handful of postings, never its text.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from typing import Any

from evolcoder.dataset.decontam import words


def shingles(text: str, size: int) -> set[str]:
    """Word `size`-grams of `text` (lower-cased), padded with `size - 1` boundary marks on each
    side. The padding makes a change at either end cost as many shingles as one in the
    middle, so how similar a one-word edit is depends only on the text's length: with
    bigrams at 0.65, an edit of a 9-word instruction or longer is a near-duplicate, while
    "reverse a string" / "reverse a list" (7 words, 0.6) stay two tasks."""
    tokens = ["^"] * (size - 1) + words(text) + ["$"] * (size - 1)
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def dedup_text(record: dict[str, Any]) -> str:
    return f"{record.get('instruction', '')}\n{record.get('input', '')}"


def jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _overlap_jaccard(mine: set[int], theirs: Any) -> float:
    """Jaccard of a set and a sorted, duplicate-free sequence, without building a second set."""
    both = len(mine.intersection(theirs))
    union = len(mine) + len(theirs) - both
    return both / union if union else 1.0


def root_of(record: dict[str, Any]) -> str:
    """The lineage a record belongs to: its seed's id (records without one are their own root)."""
    return str(record.get("root_id") or record.get("id"))


class NearDuplicateIndex:
    """Kept records as rank-ordered token-id arrays, with postings for their prefix tokens only.

    `frequencies` (shingle -> records holding it) fixes the global order, rarest first,
    which keeps postings lists short; shingles it does not know rank after all known ones
    (the result stays exact, only candidate lists grow).
    """

    def __init__(self, threshold: float, shingle_size: int, frequencies: Counter[str] | None = None) -> None:
        self.threshold = threshold
        self.shingle_size = shingle_size
        order = sorted((frequencies or Counter()).items(), key=lambda kv: (kv[1], kv[0]))
        self._rank: dict[str, int] = {gram: i for i, (gram, _) in enumerate(order)}
        self._postings: dict[int, array] = {}
        self._tokens = array("i")  # every kept record's sorted ranks, back to back
        self._starts = array("q", [0])
        self._head = array("i")  # the same for its instruction alone
        self._head_starts = array("q", [0])
        self._roots = array("i")
        self._root_ids: dict[str, int] = {}
        self.kept_ids: list[str] = []

    def _ranks(self, text: str) -> list[int]:
        rank = self._rank
        out = set()
        for gram in shingles(text, self.shingle_size):
            if gram not in rank:
                rank[gram] = len(rank)
            out.add(rank[gram])
        return sorted(out)

    def _prefix(self, size: int) -> int:
        return size - math.ceil(self.threshold * size - 1e-9) + 1

    def _best(self, ranks: list[int], head: set[int], root: int) -> tuple[int, float] | None:
        """The most similar kept record of another root at or above the threshold, both over
        instruction + input and over the instruction alone (one long shared input must not
        make "sort it" and "reverse it" one task)."""
        size, mine = len(ranks), set(ranks)
        low, high = self.threshold * size - 1e-9, size / self.threshold + 1e-9
        seen: set[int] = set()
        best: tuple[int, float] | None = None
        for token in ranks[:self._prefix(size)]:
            for key in self._postings.get(token, ()):
                if key in seen or self._roots[key] == root:
                    continue
                seen.add(key)
                start, end = self._starts[key], self._starts[key + 1]
                if not low <= end - start <= high:
                    continue
                similarity = _overlap_jaccard(mine, self._tokens[start:end])
                if similarity >= self.threshold:
                    h0, h1 = self._head_starts[key], self._head_starts[key + 1]
                    similarity = min(similarity, _overlap_jaccard(head, self._head[h0:h1]))
                if similarity >= self.threshold and (best is None or (similarity, -key) > (best[1], -best[0])):
                    best = (key, similarity)
        return best

    def offer(self, text: str, record_id: str = "", root: str | None = None,
              instruction: str | None = None) -> tuple[int, float] | None:
        """Index `text` and return None, or return (earlier kept index, similarity) when it is a
        near-duplicate of a kept record of another root (then it is not indexed). `root` None
        makes the text its own lineage; `instruction` (default: `text`) must be similar too."""
        ranks = self._ranks(text)
        head = ranks if instruction is None else self._ranks(instruction)
        root_no = self._root_ids.setdefault(root, len(self._root_ids)) if root is not None else -1 - len(self.kept_ids)
        hit = self._best(ranks, set(head), root_no)
        if hit is not None:
            return hit
        key = len(self.kept_ids)
        for token in ranks[:self._prefix(len(ranks))]:
            self._postings.setdefault(token, array("i")).append(key)
        self._tokens.extend(ranks)
        self._starts.append(len(self._tokens))
        self._head.extend(head)
        self._head_starts.append(len(self._head))
        self._roots.append(root_no)
        self.kept_ids.append(record_id)
        return None


def shingle_frequencies(texts: Iterable[str], shingle_size: int) -> Counter[str]:
    """In how many texts each shingle occurs: the rarest-first order of prefix filtering."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(shingles(text, shingle_size))
    return counts


def near_duplicates(records: Iterable[dict[str, Any]], threshold: float, shingle_size: int,
                    lineage: bool = True) -> list[tuple[int, int, float]]:
    """(dropped position, kept position, similarity) for every near-duplicate, in order;
    with `lineage`, records of the same root are never compared."""
    records = list(records)
    index = NearDuplicateIndex(threshold, shingle_size,
                               shingle_frequencies((dedup_text(r) for r in records), shingle_size))
    positions: list[int] = []
    pairs: list[tuple[int, int, float]] = []
    for pos, record in enumerate(records):
        hit = index.offer(dedup_text(record), str(pos), root_of(record) if lineage else None,
                          record.get("instruction", ""))
        if hit is None:
            positions.append(pos)
        else:
            pairs.append((pos, positions[hit[0]], hit[1]))
    return pairs
