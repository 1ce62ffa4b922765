"""Typed, validated settings: one frozen dataclass per `params.yaml` section.

Every stage reads exactly one section (plus `llm` where it calls a model). Loading is
strict on purpose: a typo in a params key or a value of the wrong type must fail before
any LLM call or GPU hour is spent, with a message that names the offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml


class ConfigError(ValueError):
    """A params value is missing, unknown or of the wrong type; the message names the key."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


METHOD_NAMES = ("constraints", "rare_requirement", "reasoning_steps", "erroneous_code", "complexity")


@dataclass(frozen=True)
class SeedConfig:
    path: str = _help("Seed instructions: a Code Alpaca JSON array, a JSONL file, a saved "
                      "`datasets` directory or a Hugging Face dataset id.", "data/seed/input.jsonl")
    n: int = _help("How many seed records to sample; 0 keeps all.", 0)
    seed: int = _help("RNG seed for sampling seed records.", 42)
    on_error: Literal["fail", "skip"] = _help(
        "What to do with an invalid seed record: `fail` stops with file:line, `skip` counts it.", "fail")
    split: str = _help("Split to read when `path` is a Hugging Face dataset.", "train")

    def validate(self) -> None:
        _check(self.n >= 0, "seed.n", "must be >= 0")


@dataclass(frozen=True)
class RoundOverride:
    seed: int | None = _help("RNG seed for this round only (default: derived from evol.seed).", None)
    methods: dict[str, float] | None = _help("Method weights for this round only.", None)
    active: bool | None = _help("Force this round on or off regardless of evol.rounds.", None)


@dataclass(frozen=True)
class EvolConfig:
    rounds: int = _help("Number of evolution rounds (the paper peaked near 3).", 3)
    slots: int = _help("Round stages declared in dvc.yaml; rounds may not exceed it.", 8)
    seed: int = _help("Base RNG seed: the method of an item is drawn from (seed, round, item id).", 1234)
    methods: dict[str, float] = _help(
        "Weights of the five code-evolution heuristics; 0 disables one.",
        factory=lambda: {"constraints": 1.0, "rare_requirement": 1.0, "reasoning_steps": 1.0,
                         "erroneous_code": 1.0, "complexity": 0.5})
    per_round: dict[str, RoundOverride] = _help(
        "Overrides keyed `r<N>` (e.g. r3: {seed: 7}); only that round and later ones re-run.",
        factory=dict)
    llm_equality_check: bool = _help(
        "Also ask the LLM whether an evolved instruction equals its parent (costs one call per item).",
        False)
    min_sorry_words: int = _help("A response containing 'sorry' shorter than this many words is eliminated.", 80)
    similarity_threshold: float = _help(
        "Evolved instructions at least this similar to their parent (difflib ratio) are eliminated.", 0.95)

    def validate(self) -> None:
        _check(self.rounds >= 0, "evol.rounds", "must be >= 0")
        _check(self.rounds <= self.slots, "evol.rounds",
               f"is {self.rounds} but dvc.yaml declares only {self.slots} round slots "
               "(raise evol.slots and add slots to vars.slots in dvc.yaml)")
        _check_methods(self.methods, "evol.methods")
        for key, override in self.per_round.items():
            _check(key.startswith("r") and key[1:].isdigit() and 1 <= int(key[1:]) <= self.slots,
                   f"evol.per_round.{key}", f"must be r1..r{self.slots}")
            if override.methods is not None:
                _check_methods(override.methods, f"evol.per_round.{key}.methods")
        _check(0.0 < self.similarity_threshold <= 1.0, "evol.similarity_threshold", "must be in (0, 1]")


def _check_methods(methods: dict[str, float], key: str) -> None:
    for name, weight in methods.items():
        _check(name in METHOD_NAMES, f"{key}.{name}", f"is not a method; known: {', '.join(METHOD_NAMES)}")
        _check(weight >= 0, f"{key}.{name}", "weight must be >= 0")
    _check(sum(methods.values()) > 0, key, "at least one method needs a positive weight")


@dataclass(frozen=True)
class LLMConfig:
    provider: Literal["openai", "transformers"] = _help(
        "`openai`: any OpenAI-compatible chat endpoint; `transformers`: an in-process Hugging Face model.",
        "openai")
    model: str = _help("Model name at the endpoint, or a model directory / hub id for transformers.",
                       "gpt-3.5-turbo")
    base_url: str | None = _help("Endpoint base URL (vLLM, Ollama, llama.cpp...); null means OpenAI.", None)
    concurrency: int = _help("Requests in flight at once (openai) or batch size (transformers).", 8)
    temperature: float = _help("Sampling temperature for evolution and answers.", 1.0)
    top_p: float = _help("Nucleus sampling top_p.", 1.0)
    max_tokens: int = _help("Max new tokens per completion.", 2048)
    timeout_s: float = _help("Per-request timeout in seconds.", 120.0)
    max_attempts: int = _help("Attempts per request on 429/5xx/timeouts (exponential backoff, jitter).", 6)
    cache: str = _help("SQLite completion cache shared by all stages (git-ignored, outside DVC outs).",
                       ".evolcoder/cache.sqlite")
    max_calls: int = _help("Stop cleanly after this many paid (uncached) calls in one stage; 0 = unlimited.", 0)
    price_per_1k: dict[str, float] | None = _help(
        "Optional prices per 1k tokens: {prompt: x, completion: y}, for the cost estimate.", None)
    seed: int = _help("Sampling seed sent with each request (part of the cache key).", 0)

    def validate(self) -> None:
        _check(self.concurrency >= 1, "llm.concurrency", "must be >= 1")
        _check(self.max_tokens >= 1, "llm.max_tokens", "must be >= 1")
        _check(self.timeout_s > 0, "llm.timeout_s", "must be > 0")
        _check(self.max_attempts >= 1, "llm.max_attempts", "must be >= 1")
        _check(self.max_calls >= 0, "llm.max_calls", "must be >= 0")
        _check(0.0 <= self.temperature <= 2.0, "llm.temperature", "must be in [0, 2]")
        _check(0.0 < self.top_p <= 1.0, "llm.top_p", "must be in (0, 1]")
        if self.price_per_1k is not None:
            unknown = set(self.price_per_1k) - {"prompt", "completion"}
            _check(not unknown, "llm.price_per_1k", f"unknown keys {sorted(unknown)}; use prompt/completion")


@dataclass(frozen=True)
class MergeConfig:
    ngram: int = _help("n-gram size for benchmark decontamination (word n-grams).", 10)
    decontaminate: list[str] = _help(
        "Benchmarks whose prompts must not leak into training data.",
        factory=lambda: ["humaneval", "mbpp"])
    data_dir: str | None = _help(
        "Local directory holding benchmark files (else $EVOLCODER_DATA_DIR, else the packaged copies).", None)

    def validate(self) -> None:
        _check(self.ngram >= 3, "merge.ngram", "must be >= 3")


S = TypeVar("S")


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"params: {key}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, recursing into containers and dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"params: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"params: {key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"params: {key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params: {key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"params: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params: {key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params: {key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params: {key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def build(cls: type[S], data: Any, section: str) -> S:
    """Build the dataclass `cls` from a mapping; reject unknown keys and bad types by name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params: {section}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise ConfigError(f"params: {section}.{unknown[0]}: unknown key "
                          f"(known: {', '.join(sorted(names))})")
    values = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read params.yaml, naming the file in any parse error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of params sections")
    return data


def load_section(cls: type[S], section: str, params_path: str | Path = "params.yaml") -> S:
    """Load and validate one params section, e.g. `load_section(SeedConfig, "seed")`."""
    return build(cls, load_yaml(params_path).get(section), section)


def to_dict(obj: Any) -> dict[str, Any]:
    """The resolved config as plain data, to be saved beside what it produced."""
    return dataclasses.asdict(obj)


def describe(cls: type) -> list[tuple[str, str, Any]]:
    """(name, help, default) for every field, for `evolcoder params` style help."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        rows.append((f.name, f.metadata.get("help", ""), default))
    return rows


# --- finetune section (issue 4) ---


# --- generate / eval / dev sections (issue 5) ---


# --- sections used by the whole pipeline ---
# SECTIONS maps each params.yaml section to its dataclass; helpers register theirs here.
SECTIONS: dict[str, type] = {
    "seed": SeedConfig,
    "evol": EvolConfig,
    "llm": LLMConfig,
    "merge": MergeConfig,
}
