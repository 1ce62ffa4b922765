"""The dataset card that travels with data/train: where it came from and under what licence.

The seed's licence binds everything evolved from it (Code Alpaca is CC BY-NC 4.0, so a
model trained on its evolutions is non-commercial too), and a training set is only as
trustworthy as its decontamination, so the card states both, with the counts and the
params that produced the file, next to the file itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolcoder.jsonio import atomic_open

_KNOWN = (
    (("resources/seed.jsonl",), "evolcoder's own seed set (src/evolcoder/resources/seed.jsonl)", "Apache-2.0"),
    (("code_alpaca", "codealpaca"), "Code Alpaca (sahil280114/codealpaca)", "CC BY-NC 4.0"),
)


def seed_source(seed_path: str, seed_license: str) -> tuple[str, str]:
    """(description, licence) of the seed; `auto` recognises the known seed sets by path."""
    lowered = seed_path.replace("\\", "/").lower()
    for needles, name, licence in _KNOWN:
        if any(n in lowered for n in needles):
            return name, licence if seed_license == "auto" else seed_license
    if seed_license == "auto":
        return seed_path, "unknown: set merge.seed_license"
    return seed_path, seed_license


def render_card(metrics: dict[str, Any], params: dict[str, Any], seed_path: str, rounds: int) -> str:
    """Markdown with a YAML header (Hugging Face card style)."""
    name, licence = seed_source(seed_path, params["seed_license"])
    spdx = {"Apache-2.0": "apache-2.0", "CC BY-NC 4.0": "cc-by-nc-4.0"}.get(licence, "other")
    dropped = metrics["dropped"]
    lines = [
        "---", f"license: {spdx}", "task_categories: [text-generation]", "tags: [code, evol-instruct]", "---",
        "", "# evolcoder training set (`train.jsonl`)", "",
        f"Instruction/answer pairs: the seed set evolved for {rounds} round(s) with Code Evol-Instruct, "
        "merged, deduplicated and decontaminated by `stages/merge.py`. Written by the merge stage; do not edit.",
        "", "## Source and licence", "",
        f"- Seed: {name}", f"- Licence: {licence} (evolved records inherit the seed's licence; the terms of "
        "the evolver model's provider may add conditions)", "",
        "## Counts", "",
        "| records in | kept | exact duplicates | near duplicates | contaminated |", "|---|---|---|---|---|",
        f"| {metrics['records_in']} | {metrics['records_out']} | {dropped.get('duplicate', 0)} | "
        f"{dropped.get('near_duplicate', 0)} | {dropped.get('contaminated', 0)} |", "",
        "Kept by round: " + ", ".join(f"{k} {v}" for k, v in metrics["by_round"].items()), "",
        "## Decontamination", "",
        "Checked against: " + ", ".join(f"{n} (sha256 {h[:12]})" for n, h in metrics["benchmarks"].items()), "",
        "| reason (field_detector) | records |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in metrics["contamination"]["by_reason"].items()), "",
        "A record can count under several reasons. Every dropped record is listed in `dropped.jsonl`. "
        "The detectors' recall and false-positive rate are measured by `benchmarks/bench_decontam.py`.", "",
        "## Params (`merge`)", "",
        *(f"- `{k}`: {v}" for k, v in params.items()), "",
        f"train.jsonl sha256: `{metrics['train_sha256']}`", "",
    ]
    return "\n".join(lines)


def write_card(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)
