"""Decontamination recall and merge speed, measured side by side in one run.

1. Canaries (tests/canaries.py): benchmark items planted in Code Alpaca records, five
   perturbation kinds. Recall per kind and family for the merge stage's detectors with
   the default params, next to the previous check (instruction-only 10-grams + entry-point
   names); the false-positive rate of both on the 2,017 clean Code Alpaca 2k records.
   Targets: recall >= 0.95 overall at <= 1 % false positives.
2. Speed: 20,000 records synthesised from Code Alpaca 2k (near-copies by perturbation,
   canaries planted) merged and checked end to end (index build + merge). Target <= 60 s.
3. Near-duplicate candidates on the same 20k instructions: the merge's exact prefix-filtered
   index vs datasketch MinHash LSH (what merge used before), with the same exact check.
   Near-duplicate recall by kind: benchmarks/bench_neardup.py.

    EVOLCODER_DATA_DIR=../shared/data python benchmarks/bench_decontam.py [--per-kind 300]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from canaries import FAMILIES, KINDS, load_hosts, make_canaries  # noqa: E402

from evolcoder.config import MergeConfig  # noqa: E402
from evolcoder.dataset.decontam import ContaminationIndex  # noqa: E402
from evolcoder.dataset.dedup import NearDuplicateIndex, dedup_text, jaccard, shingle_frequencies, shingles  # noqa: E402
from evolcoder.dataset.merge import load_index, merge  # noqa: E402
from evolcoder.eval.problems import load_benchmark  # noqa: E402
from evolcoder.records import record_id  # noqa: E402


def previous_check(data_dir: str):
    """The merge stage's check before this change: 10-grams of HumanEval + MBPP prompts and
    HumanEval entry-point names, on the instruction (+ input) only."""
    texts, names = [], []
    for name in ("humaneval", "mbpp-full"):
        for p in load_benchmark(name, data_dir).problems:
            texts.append((name, p.prompt))
            if name == "humaneval":
                names.append((name, p.entry_point))
    index = ContaminationIndex.build(texts, names, 10)
    return lambda r: index.check(f"{r['instruction']}\n{r.get('input', '')}") is not None


def canary_table(data_dir: Path, per_kind: int, seed: int) -> None:
    checker = load_index(MergeConfig(data_dir=str(data_dir)))
    old = previous_check(str(data_dir))
    hosts = load_hosts(data_dir)
    canaries = make_canaries(data_dir, per_kind, seed=seed, hosts=hosts)
    new_hit = Counter()
    old_hit = Counter()
    total = Counter()
    for c in canaries:
        for key in (c.kind, (c.kind, c.family), "all"):
            total[key] += 1
            new_hit[key] += bool(checker.check(c.record))
            old_hit[key] += old(c.record)
    print(f"\n## Canaries: {len(canaries)} ({per_kind} per kind, seed {seed}), default params\n")
    print("| kind | " + " | ".join(FAMILIES) + " | recall | previous check |")
    print("|---|" + "---|" * (len(FAMILIES) + 2))
    for kind in KINDS:
        fam = " | ".join(f"{new_hit[(kind, f)]}/{total[(kind, f)]}" for f in FAMILIES)
        print(f"| {kind} | {fam} | {new_hit[kind] / total[kind]:.3f} | {old_hit[kind] / total[kind]:.3f} |")
    print(f"| **overall** | | | | **{new_hit['all'] / total['all']:.3f}** | {old_hit['all'] / total['all']:.3f} |")
    flagged = [(i, checker.check(h)) for i, h in enumerate(hosts)]
    flagged = [(i, hits) for i, hits in flagged if hits]
    old_fp = sum(old(h) for h in hosts)
    print(f"\nFalse positives on the {len(hosts)} clean Code Alpaca 2k records: {len(flagged)} "
          f"({len(flagged) / len(hosts):.2%}); previous check: {old_fp} ({old_fp / len(hosts):.2%})\n")
    for i, hits in flagged:
        why = ", ".join(f"{h.reason} {h.benchmark} {h.detail}".strip() for h in hits)
        print(f"- #{i} {hosts[i]['instruction'][:70]!r}: {why}")


_TAILS = [" Explain your answer.", " Use Python.", " Keep it short.", " Add comments to the code.",
          " Make it efficient.", " Include a usage example.", " Handle empty input.", " Thanks!", " Be concise."]


def synthesise(data_dir: Path, n: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Seed = Code Alpaca 2k; rounds = perturbed copies (a tail sentence, case and spacing
    changes, a word dropped) with canaries planted in 2 % of them, up to `n` records."""
    rng = random.Random(seed)
    hosts = load_hosts(data_dir)
    canaries = [c.record for c in make_canaries(data_dir, per_kind=max(1, n // 250), seed=seed, hosts=hosts)]
    seed_records = [{**_record(h, 0), "host": i} for i, h in enumerate(hosts)]
    rounds: list[list[dict[str, Any]]] = []
    made = len(seed_records)
    round_no = 1
    while made < n:
        batch = []
        for host, h in enumerate(hosts[: n - made]):
            if rng.random() < 0.02:
                batch.append({**_record(rng.choice(canaries), round_no), "host": -1 - made - len(batch)})
                continue
            words_ = h["instruction"].split()
            if len(words_) > 6 and rng.random() < 0.5:
                del words_[rng.randrange(len(words_))]
            text = " ".join(words_) + rng.choice(_TAILS)
            batch.append({**_record({**h, "instruction": text.upper() if rng.random() < 0.2 else text}, round_no),
                          "host": host})
        rounds.append(batch)
        made += len(batch)
        round_no += 1
    return seed_records, rounds


def _record(h: dict[str, Any], round_no: int) -> dict[str, Any]:
    return {"id": record_id(h["instruction"], h.get("input", "")), "instruction": h["instruction"],
            "input": h.get("input", ""), "output": h["output"], "round": round_no}


def speed(data_dir: Path, n: int) -> list[dict[str, Any]]:
    seed, rounds = synthesise(data_dir, n)
    total = len(seed) + sum(map(len, rounds))
    cfg = MergeConfig(data_dir=str(data_dir))
    c0, t0 = time.process_time(), time.perf_counter()
    checker = load_index(cfg)
    t1 = time.perf_counter()
    result = merge(seed, rounds, checker, cfg)
    c2, t2 = time.process_time(), time.perf_counter()
    print(f"\n## Speed: {total} records (seed {len(seed)} + {len(rounds)} rounds), default params\n")
    print(f"- index build (11 benchmarks): {t1 - t0:.1f} s; merge (exact dedup + decontamination of both "
          f"fields + MinHash LSH near-dedup): {t2 - t1:.1f} s; **total {t2 - t0:.1f} s wall, {c2 - c0:.1f} s CPU** "
          f"(target <= 60 s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"- kept {result.metrics['records_out']}, dropped {result.metrics['dropped']}")
    print(f"- contamination by reason: {result.metrics['contamination']['by_reason']}")
    return [*seed, *(r for batch in rounds for r in batch)]


def minhash_libraries(records: list[dict[str, Any]], threshold: float = 0.65, size: int = 2,
                      num_perm: int = 128) -> None:
    """The merge's exact prefix-filtered index (NearDuplicateIndex) vs MinHash LSH (datasketch,
    what merge used before) proposing candidates for the same exact-Jaccard check."""
    from datasketch import MinHash, MinHashLSH

    texts = [dedup_text(r) for r in records]
    c0 = time.process_time()
    index = NearDuplicateIndex(threshold, size, shingle_frequencies(texts, size))
    d_pf = {pos for pos, t in enumerate(texts) if index.offer(t) is not None}
    t_pf = time.process_time() - c0

    c0 = time.process_time()
    perms = MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm, weights=(0.2, 0.8))
    kept: list[set[str]] = []
    d_mh: set[int] = set()
    for pos, t in enumerate(texts):
        gs = shingles(t, size)
        sig = MinHash(num_perm=num_perm, seed=1, permutations=perms, scheme="affine32")
        sig.update_batch([g.encode("utf-8") for g in sorted(gs)])
        if any(jaccard(gs, kept[k]) >= threshold for k in lsh.query(sig)):
            d_mh.add(pos)
            continue
        lsh.insert(len(kept), sig)
        kept.append(gs)
    t_mh = time.process_time() - c0
    print(f"\n## Near-duplicate candidates: {len(records)} instructions, padded word {size}-shingles, "
          f"Jaccard >= {threshold}, no lineage\n")
    print("| index | CPU seconds (shingles + index + exact check) | dropped |\n|---|---|---|")
    print(f"| prefix filter (merge, exact) | {t_pf:.2f} | {len(d_pf)} |")
    print(f"| datasketch MinHash LSH, {num_perm} perms | {t_mh:.2f} | {len(d_mh)} (missed {len(d_pf - d_mh)}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: CI checks the bench still runs")
    args = parser.parse_args()
    if args.smoke:
        args.per_kind, args.records = 3, 300
    data_dir = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
    canary_table(data_dir, args.per_kind, args.seed)
    records = speed(data_dir, args.records)
    minhash_libraries(records)


if __name__ == "__main__":
    main()
