"""Similarity of each round's data to the test set: the paper's leakage check, by round.

WizardCoder's second claim is that evolution does not move the training data towards
the benchmarks, so the gain is not leakage. Here, for round 0 (the seed) and every round,
each benchmark problem's prompt is compared with every record of that round (instruction
+ input) and its nearest record and their similarity are recorded: a mean per round for
the plot, and quantiles, a histogram and the closest problems per benchmark for reading.

The measure is TF-IDF cosine over word 1-2-grams (lower-cased `[a-z0-9_]+` words), the
n-grams hashed (crc32) into 2^20 columns so the vocabulary never has to be held, with
smoothed IDF fitted on all rounds' records together, so every round is weighed on the
same scale. It runs in chunks of sparse matrices (scipy): memory is one chunk, and 100k
records against HumanEval + MBPP take seconds.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from evolcoder.dataset.decontam import words
from evolcoder.contracts import round_key

N_FEATURES = 1 << 20
MEASURE = ("TF-IDF cosine over word 1-2-grams (hashed to 2^20 columns, smoothed IDF fitted on all rounds' "
           "instruction + input), each benchmark prompt against its nearest record of the round")
CHUNK = 8192


def features(text: str) -> list[int]:
    """Hashed word 1- and 2-gram columns of `text` (repeats kept: they are the term counts)."""
    tokens = words(text)
    grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return [zlib.crc32(g.encode("utf-8")) & (N_FEATURES - 1) for g in grams]


def _counts(texts: Sequence[str]) -> sparse.csr_matrix:
    indptr, indices = [0], []
    for text in texts:
        indices.extend(features(text))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    m = sparse.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                          shape=(len(texts), N_FEATURES))
    m.sum_duplicates()
    return m


def _chunks(texts: Iterable[str]) -> Iterable[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _weigh(m: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear TF times IDF, rows L2-normalised (cosine is then a dot product)."""
    m = m.copy()
    m.data = (1.0 + np.log(m.data)) * idf[m.indices]
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ m


def document_frequencies(rounds: Sequence[Iterable[str]]) -> tuple[np.ndarray, int]:
    df = np.zeros(N_FEATURES, dtype=np.int64)
    n = 0
    for texts in rounds:
        for chunk in _chunks(texts):
            m = _counts(chunk)
            df += np.bincount(m.indices, minlength=N_FEATURES)
            n += len(chunk)
    return df, n


def nearest(problems: Sequence[str], texts: Iterable[str], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best similarity, index of the nearest text) for every problem; -1 when `texts` is empty."""
    b = _weigh(_counts(problems), idf).T.tocsc()
    best = np.zeros(len(problems), dtype=np.float64)
    where = np.full(len(problems), -1, dtype=np.int64)
    offset = 0
    for chunk in _chunks(texts):
        sims = (_weigh(_counts(chunk), idf) @ b).toarray()  # chunk x problems
        arg = sims.argmax(axis=0)
        top = sims[arg, np.arange(len(problems))]
        better = top > best
        best[better], where[better] = top[better], arg[better] + offset
        offset += len(chunk)
    return best, where


def _summary(sims: np.ndarray, ids: list[str], names: list[str]) -> dict[str, Any]:
    order = np.argsort(-sims, kind="stable")[:5]
    return {"mean": round(float(sims.mean()), 4), "median": round(float(np.median(sims)), 4),
            "p90": round(float(np.quantile(sims, 0.9)), 4), "max": round(float(sims.max()), 4),
            "histogram": {"edges": [round(x, 1) for x in np.linspace(0, 1, 11)],
                          "counts": np.histogram(np.clip(sims, 0, 1), bins=10, range=(0, 1))[0].tolist()},
            "closest": [{"task_id": names[i], "record_id": ids[i], "similarity": round(float(sims[i]), 4)}
                        for i in order]}


def test_similarity(rounds: dict[int, Iterable[dict[str, Any]]], benchmarks: Sequence[Any]) -> dict[str, Any]:
    """Per round (0 = seed): `mean` over every problem of every benchmark, and per-benchmark
    detail. `rounds` maps round number to re-iterable records (read three times: IDF, ids, search)."""
    def texts(records: Iterable[dict[str, Any]]) -> Iterable[str]:
        return (f"{r.get('instruction', '')}\n{r.get('input', '')}" for r in records)

    df, n = document_frequencies([texts(r) for r in rounds.values()])
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    out: dict[str, Any] = {"measure": MEASURE, "benchmarks": [b.name for b in benchmarks], "rounds": {}}
    for round_no, records in rounds.items():
        ids = [r.get("id", "") for r in records]
        pooled, per_bench = [], {}
        for bench in (b for b in benchmarks if b.problems):
            sims, where = nearest([p.prompt for p in bench.problems], texts(records), idf)
            per_bench[bench.name] = _summary(sims, [ids[i] if i >= 0 else "" for i in where],
                                             [p.task_id for p in bench.problems])
            pooled.append(sims)
        allsims = np.concatenate(pooled) if pooled else np.zeros(0)
        out["rounds"][round_key(round_no)] = {"records": len(ids),
                                         "mean": round(float(allsims.mean()), 4) if len(allsims) else None,
                                         "by_benchmark": per_bench}
    return out
