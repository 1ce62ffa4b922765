"""Resolve the `evol` params into one settings file per round slot.

DVC decides what to re-run by hashing each stage's dependencies. A round stage depends
on its own plan file only, which holds that round's resolved settings and never the
total round count, so raising `evol.rounds` from 3 to 4 leaves rounds 1-3's plan files
byte-identical and DVC skips them; overriding `evol.per_round.r3` changes only round 3's
file, and later rounds follow through their data dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolcoder.config import EvolConfig, LLMConfig

from evolcoder.errors import ConfigError
from evolcoder.jsonio import write_json

# LLM settings that change what a round produces; concurrency, timeouts and the cache
# path do not, so they stay out of the plan and changing them re-runs nothing.
OUTPUT_AFFECTING_LLM_KEYS = ("provider", "model", "base_url", "temperature", "top_p", "max_tokens", "seed",
                             "dtype")


def round_plan(evol: EvolConfig, llm: LLMConfig, round_no: int) -> dict[str, Any]:
    """The resolved settings of one round slot."""
    if round_no > evol.rounds:
        return {"round": round_no, "active": False}
    override = evol.per_round.get(f"r{round_no}")
    weights = dict(evol.methods)
    seed = evol.seed
    if override is not None:
        weights = dict(override.methods) if override.methods is not None else weights
        seed = override.seed if override.seed is not None else seed
    return {
        "round": round_no,
        "active": True,
        "seed": seed,
        "methods": {name: weight for name, weight in sorted(weights.items()) if weight > 0},
        "elimination": {
            "drop_truncated": evol.drop_truncated,
            "llm_equality_check": evol.llm_equality_check,
            "min_sorry_words": evol.min_sorry_words,
            "similarity_threshold": evol.similarity_threshold,
        },
        "llm": {key: getattr(llm, key) for key in OUTPUT_AFFECTING_LLM_KEYS},
    }


def check_slots(evol: EvolConfig, slots: int) -> None:
    """Round counts and per-round overrides must fit the slots dvc.yaml declares."""
    if evol.rounds > slots:
        raise ConfigError(f"params: evol.rounds: is {evol.rounds} but dvc.yaml declares only {slots} "
                          "round slots; add slots to `vars: slots` in dvc.yaml and raise --slots of `plan`")
    for key in evol.per_round:
        if int(key[1:]) > slots:
            raise ConfigError(f"params: evol.per_round.{key}: dvc.yaml declares only {slots} round slots")


def write_plans(evol: EvolConfig, llm: LLMConfig, out_dir: str | Path, slots: int) -> list[Path]:
    """Write `round_<r>.json` for every slot 1..slots."""
    check_slots(evol, slots)
    paths = []
    for r in range(1, slots + 1):
        path = Path(out_dir) / f"round_{r}.json"
        write_json(path, round_plan(evol, llm, r))
        paths.append(path)
    return paths
