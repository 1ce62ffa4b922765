"""Near-duplicate removal by kind, lineage kept, and false drops on clean Code Alpaca 2k.

A hold-out seed of clean Code Alpaca records plus planted variants, each variant a record
of ANOTHER root (a second seed record, as a scraped seed set repeats itself), and
evolutions of the SAME root (the parent plus a sentence, as Evol-Instruct makes them):

- `format`: case, punctuation and whitespace only;
- `one_word`: one word replaced in an instruction of >= 15 words;
- `synonym`: common words swapped (Write->Create, function->method, list->array, ...);
- `wrapped`: a short task wrapped in "Please ..., and keep it simple.";
- `evolution` (same root): must NOT be dropped;
- `short_edit`: the last word of a 5-8-word instruction changed ("reverse a string" ->
  "reverse a list"): another task, must NOT be dropped either.

A variant pair is handled when exactly one of its two records is kept; an evolution pair
when both are. False drops: near-duplicate drops when the 2,017 clean Code Alpaca 2k
records are merged as one seed set (each its own root). Only the merge's public API is
used, so the same script measures an older checkout: PYTHONPATH=/old/src python ...

    EVOLCODER_DATA_DIR=../shared/data python benchmarks/bench_neardup.py [--per-kind 300] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

from evolcoder.config import MergeConfig
from evolcoder.dataset.decontam import build_decontaminator
from evolcoder.dataset.merge import merge

REPO = Path(__file__).resolve().parents[1]
SYNONYMS = {"write": "create", "create": "write", "function": "method", "list": "array", "array": "list",
            "program": "script", "given": "provided", "number": "integer", "find": "determine",
            "print": "output", "generate": "produce", "string": "text", "code": "snippet"}
FILLERS = ["quickly", "matrix", "values", "recursive", "nested", "sorted", "unique", "largest"]
TAILS = ["Also handle an empty input.", "Do it in O(n) time.", "Add error handling for invalid input.",
         "Use only the standard library."]
KINDS = ("format", "one_word", "synonym", "wrapped", "evolution", "short_edit")
BOTH_KEPT = ("evolution", "short_edit")


def _fmt(text: str, rng: random.Random) -> str | None:
    out = text.upper() if rng.random() < 0.5 else text.lower()
    out = re.sub(r"\s+", "  ", out).replace(".", " !").replace(",", " ;")
    return "  " + out + " ?"


def _one_word(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if len(words) < 15:
        return None
    i = rng.randrange(len(words))
    words[i] = rng.choice([f for f in FILLERS if f != words[i].lower()])
    return " ".join(words)


def _synonym(text: str, rng: random.Random) -> str | None:
    words = text.split()
    swapped = [SYNONYMS.get(w.lower(), w) if w.lower() in SYNONYMS else w for w in words]
    if sum(a != b for a, b in zip(words, swapped)) < 2:
        return None
    return " ".join(w.capitalize() if i == 0 else w for i, w in enumerate(swapped))


def _wrapped(text: str, rng: random.Random) -> str | None:
    if len(text.split()) > 12:
        return None
    return "Please " + text[0].lower() + text[1:].rstrip(".?! ") + ", and keep it simple."


def _short_edit(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if not 5 <= len(words) <= 8 or not words[-1].rstrip(".?!").isalpha():
        return None
    last = words[-1].rstrip(".?!")
    words[-1] = rng.choice([w for w in ("string", "list", "array", "dictionary", "tuple", "set") if w != last]) + "."
    return " ".join(words)


def _evolution(text: str, rng: random.Random) -> str | None:
    return text.rstrip() + " " + rng.choice(TAILS)


MAKERS = {"format": _fmt, "one_word": _one_word, "synonym": _synonym, "wrapped": _wrapped, "evolution": _evolution,
          "short_edit": _short_edit}


def _record(rid: str, text: str, inp: str, round_no: int, root: str) -> dict[str, Any]:
    return {"id": rid, "root_id": root, "instruction": text, "input": inp, "output": "x", "round": round_no,
            "method": None if round_no == 0 else "constraints", "parent_id": None if round_no == 0 else root}


def kinds_table(hosts: list[dict[str, Any]], per_kind: int, seed: int, cfg: MergeConfig) -> dict[str, tuple[int, int]]:
    """(handled, planted) per kind: hosts are a hold-out seed, variants planted as round 1."""
    rng = random.Random(seed)
    order = list(range(len(hosts)))
    rng.shuffle(order)
    seed_records = [_record(f"h{i}", hosts[i]["instruction"], hosts[i].get("input", ""), 0, f"h{i}") for i in order]
    planted: list[tuple[str, str, str]] = []  # (kind, host id, variant id)
    variants = []
    for kind in KINDS:
        made = 0
        for i in order:
            if made == per_kind:
                break
            text = MAKERS[kind](hosts[i]["instruction"], rng)
            if text is None:
                continue
            vid = f"{kind}{i}"
            root = f"h{i}" if kind == "evolution" else vid
            variants.append(_record(vid, text, hosts[i].get("input", ""), 1, root))
            planted.append((kind, f"h{i}", vid))
            made += 1
    result = merge(seed_records, [variants], build_decontaminator([], 10, 10, 0.8), cfg)
    kept = {r["id"] for r in result.records}
    table: dict[str, tuple[int, int]] = {}
    for kind in KINDS:
        pairs = [(h, v) for k, h, v in planted if k == kind]
        ok = sum((h in kept and v in kept) if kind in BOTH_KEPT else ((h in kept) != (v in kept)) for h, v in pairs)
        table[kind] = (ok, len(pairs))
    return table


def false_drops(hosts: list[dict[str, Any]], cfg: MergeConfig) -> tuple[int, float, list[str]]:
    records = [_record(f"c{i}", h["instruction"], h.get("input", ""), 0, f"c{i}") for i, h in enumerate(hosts)]
    t0 = time.process_time()
    result = merge(records, [], build_decontaminator([], 10, 10, 0.8), cfg)
    cpu = time.process_time() - t0
    by_id = {r["id"]: r for r in records}
    near = [d for d in result.dropped if d["reason"] == "near_duplicate"]
    shown = [f"{by_id[d['id']]['instruction'][:60]!r} ~ {by_id[d['kept_id']]['instruction'][:60]!r} "
             f"({d['similarity']})" for d in near]
    return len(near), cpu, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="30 per kind, 400 clean records")
    parser.add_argument("--threshold", type=float, default=None, help="override merge.dedup_threshold")
    parser.add_argument("--shingle-size", type=int, default=None, help="override merge.shingle_size")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
    hosts = json.loads((data_dir / "codealpaca" / "code_alpaca_2k.json").read_text(encoding="utf-8"))
    per_kind, clean = (30, hosts[:400]) if args.smoke else (args.per_kind, hosts)
    overrides = {k: v for k, v in (("dedup_threshold", args.threshold), ("shingle_size", args.shingle_size))
                 if v is not None}
    cfg = MergeConfig(**overrides)
    print(f"merge params: dedup_threshold {cfg.dedup_threshold}, shingle_size {cfg.shingle_size}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    table = kinds_table(hosts, per_kind, args.seed, cfg)
    print("| kind | handled | rate |\n|---|---|---|")
    for kind, (ok, n) in table.items():
        note = {"evolution": " (same root: both kept)", "short_edit": " (another task: both kept)"}.get(kind, "")
        print(f"| {kind}{note} | {ok}/{n} | {ok / max(1, n):.3f} |")
    n, cpu, shown = false_drops(clean, cfg)
    print(f"\nFalse drops on {len(clean)} clean Code Alpaca 2k records: {n} ({n / len(clean):.2%}); "
          f"merge CPU {cpu:.2f} s")
    for line in shown[:20]:
        print(f"- {line}")
    if any(total == 0 for _, total in table.values()):
        raise SystemExit("a kind had no planted pairs")


if __name__ == "__main__":
    main()
