"""Resolve the `evol` params into one typed plan per round slot, plus a manifest.

DVC decides what to re-run by hashing each stage's dependencies. A round depends on its
own plan file, which holds everything that decides that round's output (seed, weights,
the exact template and heuristic texts, elimination rules, the evolver's identity and
prompt format) and never the total round count. Raising `evol.rounds` from 3 to 4 leaves
rounds 1-3's files byte-identical, so DVC skips them; rewording a heuristic for round 3
changes only round 3's file. Transport settings (concurrency, timeouts, the cache path,
the call budget) never enter a plan, so changing them re-runs nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evolcoder.config import EvolConfig, LLMConfig, build
from evolcoder.errors import ConfigError
from evolcoder.evolution.prompts import defaults
from evolcoder.jsonio import write_json
from evolcoder.llm.base import PLAIN_FORMAT

MANIFEST = "manifest.json"
SLOTS_HINT = ("add entries to `vars: slots` in dvc.yaml (slot N evolves the pool of slot N-1: "
              "\"N\": data/rounds/r<N-1>/pool.jsonl)")


@dataclass(frozen=True)
class Evolver:
    """Who evolves and answers: every `llm` key that changes a completion, and the prompt format."""

    provider: str
    model: str
    base_url: str | list[str] | None
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    dtype: str
    prompt_format: str

    def llm_config(self, transport: LLMConfig) -> LLMConfig:
        """The client settings for this round: identity from the plan, transport from params."""
        keys = {f.name for f in dataclasses.fields(LLMConfig)}
        return dataclasses.replace(transport, **{k: v for k, v in dataclasses.asdict(self).items() if k in keys})


@dataclass(frozen=True)
class Elimination:
    """WizardLM's elimination settings (plus `drop_truncated`)."""

    drop_truncated: bool
    llm_equality_check: bool
    min_sorry_words: int
    similarity_threshold: float


@dataclass(frozen=True)
class Verification:
    """Execution verification of answers (`evol.verify*`); absent from the plan when off, so
    plans written before it existed stay byte-identical."""

    mode: Literal["tests", "tests+mutants"]
    eliminate: bool
    attempts: int
    mutants: int
    timeout_s: float
    memory_mb: int
    tests_template: str


@dataclass(frozen=True)
class RoundPlan:
    """Everything that decides one round's output; an inactive slot carries only its number."""

    round: int
    active: bool
    seed: int = 0
    methods: dict[str, float] = field(default_factory=dict)
    heuristics: dict[str, str] = field(default_factory=dict)
    template: str = ""
    equality_template: str = ""
    elimination: Elimination | None = None
    evolver: Evolver | None = None
    verify: Verification | None = None

    def to_file(self, path: str | Path) -> None:
        data = dataclasses.asdict(self)
        if self.verify is None:
            del data["verify"]
        write_json(path, data if self.active else {"round": self.round, "active": False})

    @classmethod
    def from_file(cls, path: str | Path) -> "RoundPlan":
        """Read a plan file, naming it when it is not one (a stale or hand-edited file)."""
        try:
            return build(cls, json.loads(Path(path).read_text(encoding="utf-8")), str(path))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"{path}: not a round plan ({exc}); re-run the `plan` stage") from None


def prompt_format(provider: str) -> str:
    """How requests become model input: chat messages, or (in process) the tokenizer's chat
    template when it has one, else the provider's plain completion format."""
    return "chat" if provider == "openai" else f"chat_template|{PLAIN_FORMAT}"


def resolve_texts(evol: EvolConfig, round_no: int) -> tuple[str, dict[str, str]]:
    """The template and heuristic texts of one round: paper defaults < evol.* < evol.per_round.rN."""
    base = defaults()
    texts = {**base["heuristics"], **evol.heuristics}
    override = evol.per_round.get(f"r{round_no}")
    if override is not None and override.heuristics:
        texts.update(override.heuristics)
    return evol.template or base["template"], texts


def round_plan(evol: EvolConfig, llm: LLMConfig, round_no: int) -> RoundPlan:
    """The resolved plan of one round slot."""
    if round_no > evol.rounds:
        return RoundPlan(round=round_no, active=False)
    override = evol.per_round.get(f"r{round_no}")
    weights, seed, where = dict(evol.methods), evol.seed, "evol.methods"
    if override is not None:
        if override.methods is not None:
            weights, where = dict(override.methods), f"evol.per_round.r{round_no}.methods"
        seed = override.seed if override.seed is not None else seed
    template, texts = resolve_texts(evol, round_no)
    used = {name: weight for name, weight in sorted(weights.items()) if weight > 0}
    for name in used:
        if name not in texts:
            raise ConfigError(f"params: {where}.{name}: no heuristic text; add it under evol.heuristics "
                              f"(known: {', '.join(sorted(texts))})")
    for placeholder in ("{method}", "{question}"):
        if placeholder not in template:
            raise ConfigError(f"params: evol.template: must contain {placeholder}")
    return RoundPlan(
        round=round_no, active=True, seed=seed, methods=used,
        heuristics={name: texts[name] for name in used}, template=template,
        equality_template=defaults()["equality_template"],
        elimination=Elimination(drop_truncated=evol.drop_truncated, llm_equality_check=evol.llm_equality_check,
                                min_sorry_words=evol.min_sorry_words,
                                similarity_threshold=evol.similarity_threshold),
        evolver=Evolver(provider=llm.provider, model=llm.model, base_url=llm.base_url,
                        temperature=llm.temperature, top_p=llm.top_p, max_tokens=llm.max_tokens,
                        seed=llm.seed, dtype=llm.dtype, prompt_format=prompt_format(llm.provider)),
        verify=verification(evol))


def verification(evol: EvolConfig) -> Verification | None:
    """The output-affecting verify settings; workers and the rlimits opt-in are transport."""
    if evol.verify == "off":
        return None
    return Verification(mode=evol.verify, eliminate=evol.verify_eliminate, attempts=evol.verify_attempts,
                        mutants=evol.verify_mutants, timeout_s=evol.verify_timeout_s,
                        memory_mb=evol.verify_memory_mb, tests_template=defaults()["tests_template"])


def check_slots(evol: EvolConfig, slots: int) -> None:
    """Round counts and per-round overrides must fit the slots dvc.yaml declares."""
    if evol.rounds > slots:
        raise ConfigError(f"params: evol.rounds: is {evol.rounds} but dvc.yaml declares only {slots} "
                          f"round slots; {SLOTS_HINT}")
    for key in evol.per_round:
        if int(key[1:]) > slots:
            raise ConfigError(f"params: evol.per_round.{key}: dvc.yaml declares only {slots} round slots; "
                              f"{SLOTS_HINT}")


def write_plans(evol: EvolConfig, llm: LLMConfig, out_dir: str | Path, slots: int) -> list[Path]:
    """Write `round_<r>.json` for every slot 1..slots, and the manifest of active rounds."""
    check_slots(evol, slots)
    plans = [round_plan(evol, llm, r) for r in range(1, slots + 1)]
    paths = []
    for plan in plans:
        path = Path(out_dir) / f"round_{plan.round}.json"
        plan.to_file(path)
        paths.append(path)
    write_json(Path(out_dir) / MANIFEST, {"slots": slots, "active": [p.round for p in plans if p.active]})
    return paths


def read_manifest(plan_dir: str | Path) -> list[int]:
    """The rounds that are active, as the plan stage recorded them."""
    path = Path(plan_dir) / MANIFEST
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["active"])
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"{path}: missing or not a plan manifest ({exc}); re-run the `plan` stage") from None


def parse_slots(args: list[str]) -> int:
    """The slot count from dvc.yaml's slot table as DVC unpacks it (`--1 POOL --2 POOL ...`).

    Checks that the table is 1..N without gaps and that slot N evolves slot N-1's pool, so a
    slot added by hand with a typo fails here instead of evolving the wrong data.
    """
    if len(args) % 2 or not args:
        raise ConfigError(f"dvc.yaml: vars.slots: expected `--N POOL` pairs, got {' '.join(args) or 'none'}; "
                          f"{SLOTS_HINT}")
    table = {}
    for flag, pool in zip(args[::2], args[1::2]):
        if not (flag.startswith("--") and flag[2:].isdigit()):
            raise ConfigError(f"dvc.yaml: vars.slots: {flag!r} is not a slot number; {SLOTS_HINT}")
        table[int(flag[2:])] = pool
    if sorted(table) != list(range(1, len(table) + 1)):
        raise ConfigError(f"dvc.yaml: vars.slots: slots must be \"1\"..\"N\" without gaps, got {sorted(table)}")
    for n, pool in table.items():
        if n > 1 and pool != f"data/rounds/r{n - 1}/pool.jsonl":
            raise ConfigError(f"dvc.yaml: vars.slots.{n}: is {pool!r}; slot {n} must evolve "
                              f"data/rounds/r{n - 1}/pool.jsonl")
    return len(table)
