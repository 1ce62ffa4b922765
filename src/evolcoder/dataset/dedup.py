"""Near-duplicate removal: MinHash LSH over word shingles of instruction + input.

Evolution makes near-copies by design (a round that adds one sentence to its parent),
and seed sets repeat themselves with small edits; training on both wastes steps and
over-weights them. datasketch's MinHash LSH finds candidate pairs in one pass; each
candidate is then confirmed with the exact Jaccard similarity of the shingle sets, so
what is dropped (and the similarity written next to it) does not depend on how lucky
the hashing was. Records are offered in order (seed first, then by round), so the
earliest of a near-duplicate group is the one kept. MinHash uses a fixed seed and the
library's deterministic hash, so the same input gives the same output byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datasketch import MinHash, MinHashLSH

from evolcoder.dataset.decontam import words

_SCHEME = "affine32"  # datasketch's default hashing scheme, pinned so signatures never change under us


def shingles(text: str, size: int) -> set[str]:
    """Word `size`-grams of `text` (lower-cased); shorter texts are one shingle."""
    tokens = words(text)
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def dedup_text(record: dict[str, Any]) -> str:
    return f"{record.get('instruction', '')}\n{record.get('input', '')}"


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class NearDuplicateIndex:
    """Kept records' MinHash signatures in an LSH index, plus their shingle sets."""

    threshold: float
    shingle_size: int
    num_perm: int = 128
    seed: int = 1
    lsh: MinHashLSH = field(init=False)
    kept: list[set[str]] = field(default_factory=list)
    _permutations: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Drawing the permutations is most of a MinHash's construction cost: do it once.
        self._permutations = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=_SCHEME).permutations
        # Bands are tuned for a lower threshold and weighted against misses, so pairs near the
        # threshold are still proposed (benchmarks/bench_decontam.md: 4,939 of 20k found, vs
        # 4,828 with datasketch's defaults); the exact Jaccard decides, so extra candidates
        # cost a set intersection each and never a wrong drop.
        self.lsh = MinHashLSH(threshold=max(0.05, self.threshold - 0.1), num_perm=self.num_perm,
                              weights=(0.2, 0.8))

    def _minhash(self, grams: set[str]) -> MinHash:
        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations, scheme=_SCHEME)
        m.update_batch([g.encode("utf-8") for g in sorted(grams)])
        return m

    def offer(self, text: str) -> tuple[int, float] | None:
        """Index `text` and return None, or return (earlier kept index, similarity) if it is a
        near-duplicate of a kept record (then it is not indexed)."""
        grams = shingles(text, self.shingle_size)
        signature = self._minhash(grams)
        best: tuple[int, float] | None = None
        for key in sorted(self.lsh.query(signature)):
            similarity = jaccard(grams, self.kept[key])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (key, similarity)
        if best is not None:
            return best
        self.lsh.insert(len(self.kept), signature)
        self.kept.append(grams)
        return None


def near_duplicates(records: Iterable[dict[str, Any]], threshold: float, shingle_size: int,
                    num_perm: int = 128, seed: int = 1) -> list[tuple[int, int, float]]:
    """(dropped position, kept position, similarity) for every near-duplicate, in order."""
    index = NearDuplicateIndex(threshold, shingle_size, num_perm, seed)
    positions: list[int] = []
    pairs: list[tuple[int, int, float]] = []
    for pos, record in enumerate(records):
        hit = index.offer(dedup_text(record))
        if hit is None:
            positions.append(pos)
        else:
            pairs.append((pos, positions[hit[0]], hit[1]))
    return pairs
