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
from urllib.parse import urlsplit
from typing import Any, Literal, TypeVar

import yaml

from evolcoder.errors import ConfigError
from evolcoder.suites import BENCHMARK_NAMES


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class SeedConfig:
    path: str = _help("Seed instructions: a Code Alpaca JSON array, a JSONL file, a saved "
                      "`datasets` directory or a Hugging Face dataset id.", "src/evolcoder/resources/seed.jsonl")
    n: int = _help("How many seed records to sample; 0 keeps all.", 16)
    seed: int = _help("RNG seed for sampling seed records.", 42)
    on_error: Literal["fail", "skip"] = _help(
        "What to do with an invalid seed record: `fail` stops with file:line, `skip` skips and counts it "
        "(undecodable JSONL lines too; their line numbers go to metrics/seed.json). Invalid JSON inside a "
        "JSON array always stops: the rest of the array cannot be located.", "fail")
    split: str = _help("Split to read when `path` is a Hugging Face dataset.", "train")

    def validate(self) -> None:
        _check(self.n >= 0, "seed.n", "must be >= 0")


@dataclass(frozen=True)
class RoundOverride:
    seed: int | None = _help("RNG seed for this round only (default: evol.seed).", None)
    methods: dict[str, float] | None = _help("Heuristic weights for this round only (replace evol.methods).", None)
    heuristics: dict[str, str] | None = _help(
        "Heuristic texts reworded or added for this round only (merged over evol.heuristics).", None)


@dataclass(frozen=True)
class EvolConfig:
    rounds: int = _help("Number of evolution rounds (the paper peaked near 3).", 3)
    seed: int = _help("Base RNG seed: the method of an item is drawn from (seed, round, item id).", 1234)
    methods: dict[str, float] = _help(
        "Weight of each heuristic by name (the paper's five, or ones added under evol.heuristics); "
        "0 disables one.",
        factory=lambda: {"constraints": 1.0, "rare_requirement": 1.0, "reasoning_steps": 1.0,
                         "erroneous_code": 1.0, "complexity": 0.5})
    heuristics: dict[str, str] = _help(
        "Heuristic texts that reword one of the paper's five (same name) or add one (new name, "
        "then give it a weight in evol.methods); merged over src/evolcoder/evolution/templates.yaml.",
        factory=dict)
    template: str | None = _help(
        "The evolution prompt with {method} and {question}; null = the paper's template verbatim.", None)
    per_round: dict[str, RoundOverride] = _help(
        "Overrides keyed `r<N>` (e.g. r3: {seed: 7}); only that round and later ones re-run.",
        factory=dict)
    llm_equality_check: bool = _help(
        "Also ask the LLM whether an evolved instruction equals its parent (costs one call per item).",
        False)
    min_sorry_words: int = _help("A response containing 'sorry' shorter than this many words is eliminated.", 80)
    similarity_threshold: float = _help(
        "Evolved instructions at least this similar to their parent (difflib ratio) are eliminated.", 0.95)
    drop_truncated: bool = _help(
        "Eliminate evolutions whose instruction or response was cut off at llm.max_tokens "
        "(not a WizardLM rule; off reproduces the paper's filter exactly).", True)
    verify: Literal["off", "tests", "tests+mutants"] | bool = _help(
        "Execution-verify each answer in the sandbox: `tests` runs the answer's own asserts/test "
        "functions and unit tests an extra LLM call writes from the evolved instruction alone; "
        "`tests+mutants` also requires those tests to kill one of evol.verify_mutants AST mutants of "
        "the solution; `off` is the paper's recipe (nothing is run).", "tests")
    verify_eliminate: bool = _help(
        "Eliminate items that fail verification; false only measures (verdicts and figures are "
        "recorded, nothing is dropped and nothing is answered again).", False)
    verify_attempts: int = _help(
        "Re-answers, each with a different seed, of an item that fails verification before it is "
        "eliminated (0 = eliminate at the first failure).", 1)
    verify_mutants: int = _help("Mutants per solution with `tests+mutants` (K).", 4)
    verify_timeout_s: float = _help("Sandbox time limit per item (solution + all its tests), seconds.", 5.0)
    verify_memory_mb: int = _help("Sandbox memory limit per item, MiB.", 512)
    verify_workers: int = _help("Sandbox worker processes running items in parallel (transport: never "
                                "enters the plan).", 2)
    verify_unsafe_rlimits_only: bool = _help(
        "Verify even where the sandbox can only apply rlimits (no namespaces: model code could touch "
        "your files and the network). Transport: never enters the plan.", False)

    def validate(self) -> None:
        _check(self.rounds >= 0, "evol.rounds", "must be >= 0")
        if isinstance(self.verify, bool):  # YAML 1.1 (and `dvc exp run -S evol.verify=off`) read a bare off as false
            _check(not self.verify, "evol.verify", "must be off, tests or tests+mutants, got true")
            object.__setattr__(self, "verify", "off")
        _check(self.verify_attempts >= 0, "evol.verify_attempts", "must be >= 0")
        _check(self.verify_mutants >= 1, "evol.verify_mutants", "must be >= 1")
        _check(self.verify_timeout_s > 0, "evol.verify_timeout_s", "must be > 0")
        _check(self.verify_memory_mb >= 64, "evol.verify_memory_mb", "must be >= 64")
        _check(self.verify_workers >= 1, "evol.verify_workers", "must be >= 1")
        _check_methods(self.methods, "evol.methods")
        for key, override in self.per_round.items():
            _check(key.startswith("r") and key[1:].isdigit() and int(key[1:]) >= 1,
                   f"evol.per_round.{key}", "keys must be r1, r2, ...")
            if override.methods is not None:
                _check_methods(override.methods, f"evol.per_round.{key}.methods")
            _check_texts(override.heuristics or {}, f"evol.per_round.{key}.heuristics")
        _check_texts(self.heuristics, "evol.heuristics")
        _check(0.0 < self.similarity_threshold <= 1.0, "evol.similarity_threshold", "must be in (0, 1]")


def _check_texts(texts: dict[str, str], key: str) -> None:
    for name, text in texts.items():
        _check(bool(name.strip()) and bool(text.strip()), f"{key}.{name}", "needs a name and a non-empty text")


def _check_methods(methods: dict[str, float], key: str) -> None:
    """Weights only; that every weighted name has a text is checked by the plan."""
    for name, weight in methods.items():
        _check(weight >= 0, f"{key}.{name}", "weight must be >= 0")
    _check(sum(methods.values()) > 0, key, "at least one method needs a positive weight")


@dataclass(frozen=True)
class LLMConfig:
    provider: Literal["openai", "transformers"] = _help(
        "`openai`: any OpenAI-compatible chat endpoint; `transformers`: an in-process Hugging Face model.",
        "transformers")
    model: str = _help("Model name at the endpoint, or `embedded:gemma-3-270m` / a model directory / "
                       "a hub id for transformers.", "embedded:gemma-3-270m")
    base_url: str | list[str] | None = _help(
        "Endpoint base URL (vLLM, Ollama, llama.cpp...); null means OpenAI. A list of URLs serving the "
        "same model spreads requests over them (fewest in flight first; a dead one is taken out of "
        "rotation and retried later).", None)
    concurrency: int = _help("Requests in flight at once (openai) or batch size (transformers).", 16)
    temperature: float = _help("Sampling temperature for evolution and answers.", 0.7)
    top_p: float = _help("Nucleus sampling top_p.", 0.95)
    max_tokens: int = _help("Max new tokens per completion (the paper preset: 2048).", 256)
    timeout_s: float = _help("Per-request timeout in seconds.", 120.0)
    max_attempts: int = _help("Attempts per request on 429/5xx/timeouts (exponential backoff, jitter).", 6)
    cache: str = _help("SQLite completion cache shared by all stages (git-ignored, outside DVC outs). "
                       "$EVOLCODER_CACHE overrides it, e.g. an absolute path for `dvc exp run --temp/--queue`, "
                       "whose temporary workspaces would otherwise start with an empty cache.",
                       ".evolcoder/cache.sqlite")
    max_calls: int = _help("Stop cleanly after this many paid (uncached) calls in one stage; 0 = unlimited.", 0)
    price_per_1k: dict[str, float] | None = _help(
        "Optional prices per 1k tokens: {prompt: x, completion: y}, for the cost estimate.", None)
    seed: int = _help("Sampling seed sent with each request (part of the cache key).", 0)
    backoff_s: float = _help("First retry delay in seconds; doubles per attempt (jittered, capped at 60 s). "
                             "A server's Retry-After replaces it.", 1.0)
    max_consecutive_failures: int = _help(
        "Circuit breaker: stop the stage when this many requests in a row failed after all their "
        "attempts (an outage, not a bad item), and at once on a refused connection or unknown host "
        "before anything was answered; 0 turns both off.", 10)
    max_failed_fraction: float = _help(
        "Share of a round's items that may fail transiently (after retries) with the round still "
        "written as done; 0 = any such failure fails the round so a re-run retries it.", 0.0)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _help(
        "Weights dtype of the in-process evolver (provider transformers). `auto`: bfloat16 where the "
        "hardware has it natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else float32 on CPU and float16 on "
        "GPU; emulated bf16 is ~4x slower than fp32 on an AVX2-only CPU. The resolved dtype is part of "
        "the cache's model name and is recorded in the round stats.", "auto")
    rpm: float = _help("Requests per minute to stay under (a provider's rate limit); 0 = only what the "
                       "provider's x-ratelimit-* headers say.", 0.0)
    tpm: float = _help("Tokens per minute to stay under (prompt + max_tokens per request, as OpenAI "
                       "counts them); 0 = only what the provider's headers say.", 0.0)

    def validate(self) -> None:
        check_base_urls(self.base_url, "llm.base_url")
        _check(self.rpm >= 0, "llm.rpm", "must be >= 0")
        _check(self.tpm >= 0, "llm.tpm", "must be >= 0")
        _check(self.concurrency >= 1, "llm.concurrency", "must be >= 1")
        _check(self.max_tokens >= 1, "llm.max_tokens", "must be >= 1")
        _check(self.timeout_s > 0, "llm.timeout_s", "must be > 0")
        _check(self.max_attempts >= 1, "llm.max_attempts", "must be >= 1")
        _check(self.backoff_s >= 0, "llm.backoff_s", "must be >= 0")
        _check(self.max_calls >= 0, "llm.max_calls", "must be >= 0")
        _check(self.max_consecutive_failures >= 0, "llm.max_consecutive_failures", "must be >= 0")
        _check(0.0 <= self.max_failed_fraction < 1.0, "llm.max_failed_fraction", "must be in [0, 1)")
        _check(0.0 <= self.temperature <= 2.0, "llm.temperature", "must be in [0, 2]")
        _check(0.0 < self.top_p <= 1.0, "llm.top_p", "must be in (0, 1]")
        if self.price_per_1k is not None:
            unknown = set(self.price_per_1k) - {"prompt", "completion"}
            _check(not unknown, "llm.price_per_1k", f"unknown keys {sorted(unknown)}; use prompt/completion")


_EVALUATED = ["humaneval", "humaneval+", "mbpp", "mbpp+", "multipl-e-cpp", "multipl-e-java", "multipl-e-js",
              "multipl-e-rs", "multipl-e-go", "multipl-e-sh", "dev"]


@dataclass(frozen=True)
class MergeConfig:
    ngram: int = _help("n-gram size for benchmark decontamination (word n-grams).", 10)
    decontaminate: list[str] = _help(
        "Benchmarks whose prompts, canonical programs and test cases must not leak into training "
        "data (instructions and answers); `mbpp` means all 974 MBPP tasks.", factory=lambda: list(_EVALUATED))
    data_dir: str | None = _help(
        "Local directory holding benchmark files (else $EVOLCODER_DATA_DIR, else the packaged copies).", None)
    dedup_threshold: float = _help(
        "Near-duplicate removal: drop a record whose instruction + input has at least this Jaccard "
        "similarity (word shingles) with an earlier kept one; 1.0 drops only identical shingle sets.", 0.8)
    shingle_size: int = _help("Words per shingle for near-duplicate detection.", 3)
    num_perm: int = _help("MinHash permutations (more: fewer missed candidate pairs, slower).", 128)
    minhash_seed: int = _help("Seed of the MinHash permutations (fixed, so train.jsonl is reproducible).", 1)
    code_kgram: int = _help("Tokens per k-gram of the renaming-invariant code fingerprint.", 10)
    code_containment: float = _help(
        "Drop a record whose instruction or answer contains at least this share of a benchmark "
        "program's fingerprint k-grams.", 0.8)
    code_min_kgrams: int = _help(
        "Benchmark programs with fewer distinctive k-grams than this are too generic to fingerprint "
        "without false positives and are left to the text and test-case detectors.", 8)
    example_min_chars: int = _help(
        "A benchmark test case's arguments of at least this many characters (whitespace removed) "
        "match on their own; shorter ones need the expected value beside them.", 10)
    seed_license: str = _help(
        "Licence of the seed set, written into the dataset card; `auto` recognises the project's "
        "seed (Apache-2.0) and Code Alpaca (CC BY-NC 4.0) from seed.path.", "auto")

    def validate(self) -> None:
        _check(self.ngram >= 3, "merge.ngram", "must be >= 3")
        for i, name in enumerate(self.decontaminate):
            _check(name in BENCHMARK_NAMES, f"merge.decontaminate[{i}]",
                   f"unknown benchmark {name!r}; known: {', '.join(BENCHMARK_NAMES)}")
        _check(0.0 < self.dedup_threshold <= 1.0, "merge.dedup_threshold", "must be in (0, 1]")
        _check(self.shingle_size >= 1, "merge.shingle_size", "must be >= 1")
        _check(self.num_perm >= 16, "merge.num_perm", "must be >= 16")
        _check(self.code_kgram >= 4, "merge.code_kgram", "must be >= 4")
        _check(0.0 < self.code_containment <= 1.0, "merge.code_containment", "must be in (0, 1]")
        _check(self.code_min_kgrams >= 1, "merge.code_min_kgrams", "must be >= 1")
        _check(self.example_min_chars >= 1, "merge.example_min_chars", "must be >= 1")
        _check(bool(self.seed_license.strip()), "merge.seed_license", "must not be empty")


S = TypeVar("S")


def check_base_urls(value: str | list[str] | None, key: str) -> None:
    """Each endpoint an http(s) URL with a host; a list at least one, without repeats."""
    if value is None:
        return
    urls = [value] if isinstance(value, str) else value
    _check(bool(urls), key, "an empty list; give one URL, several, or null")
    for i, url in enumerate(urls):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        parts = urlsplit(url.strip())
        _check(parts.scheme in ("http", "https") and bool(parts.netloc), where,
               f"{url!r} is not an http(s) URL such as http://localhost:8000/v1")
    _check(len(set(urls)) == len(urls), key, "lists the same URL twice")


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


@dataclass(frozen=True)
class BaseModelConfig:
    source: str = _help("Base model: `embedded:gemma-3-270m` (offline, converted once), a local model "
                        "directory (referenced, not copied) or a Hugging Face hub id.",
                        "embedded:gemma-3-270m")

    def validate(self) -> None:
        _check(bool(self.source.strip()), "base_model.source", "must not be empty")


@dataclass(frozen=True)
class LoraSettings:
    enabled: bool = _help("Train LoRA adapters (peft) instead of all weights.", True)
    r: int = _help("LoRA rank.", 16)
    alpha: int = _help("LoRA alpha (scale = alpha / r).", 32)
    dropout: float = _help("Dropout on the LoRA path.", 0.05)
    target_modules: list[str] | str = _help("Modules to adapt; `all-linear` adapts every linear layer "
                                            "except the output head.", "all-linear")
    merge: bool = _help("Merge adapters into the weights when saving, so later stages load a plain "
                        "model; false saves the adapter alone beside a reference to the base.", True)


@dataclass(frozen=True)
class FinetuneConfig:
    base_model: str = _help("Model to fine-tune: the `base_model` stage output, a model directory "
                            "or a hub id.", "models/base")
    learning_rate: float = _help("Peak learning rate (WizardCoder: 2e-5; the LoRA laptop default: 2e-4).", 2e-4)
    epochs: float = _help("Passes over the training data (WizardCoder: 3).", 1.0)
    max_steps: int = _help("Stop after this many optimizer steps; 0 = run `epochs`.", 6)
    per_device_batch_size: int = _help("Sequences per device per micro-batch.", 2)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step (ignored when "
                                             "global_batch_size is set).", 1)
    global_batch_size: int = _help("Sequences per optimizer step over all processes; 0 = use "
                                   "gradient_accumulation_steps. Must be divisible by "
                                   "per_device_batch_size x processes (WizardCoder: 512).", 0)
    max_length: int = _help("Max tokens per training sequence (WizardCoder: 2048).", 512)
    overlong: Literal["truncate", "drop"] = _help(
        "Examples longer than max_length: `truncate` the response, or `drop` them. Examples whose "
        "prompt alone does not fit are always dropped and counted.", "truncate")
    packing: bool = _help("Pack several examples per sequence; attention and loss never cross "
                          "example boundaries (position ids restart per example).", True)
    warmup_steps: int = _help("Linear warmup steps (WizardCoder: 30).", 1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = _help(
        "Learning-rate schedule after warmup.", "cosine")
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    max_grad_norm: float = _help("Gradient clipping norm; 0 disables clipping.", 1.0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _help(
        "Mixed precision with fp32 master weights. `auto`: bf16 where the GPU or CPU supports it "
        "natively, else fp16 on GPU, fp32 on CPU.", "auto")
    gradient_checkpointing: bool = _help("Recompute activations in backward to save memory.", False)
    response_logits_only: bool = _help(
        "Compute the output layer only at positions whose next token is learned (response "
        "tokens): same loss, far less work with large vocabularies. Falls back to full logits "
        "for models whose forward cannot select positions.", True)
    attn_implementation: str = _help("Attention kernel: sdpa, eager, flash_attention_2...", "sdpa")
    lora: LoraSettings = _help("LoRA (peft) settings.", factory=LoraSettings)
    seed: int = _help("Seed for init of new weights, data order and dropout.", 42)
    logging_steps: int = _help("Log loss / learning rate / tokens per second every N steps.", 1)
    save_steps: int = _help("Checkpoint every N steps so a crashed run resumes; 0 = never.", 0)
    checkpoint_dir: str = _help("Where resumable checkpoints live (outside DVC outputs, git-ignored).",
                                ".evolcoder/checkpoints/finetune")
    resume: bool = _help("Resume from the newest checkpoint of an identical run (same config and "
                         "data); a changed config or dataset starts afresh.", True)
    accelerate_config: str | None = _help(
        "An `accelerate` config file (configs/accelerate/*.yaml: multi-GPU, FSDP, DeepSpeed). When "
        "set, the stage relaunches itself under `accelerate launch --config_file` it.", None)
    dataloader_num_workers: int = _help("DataLoader worker processes.", 0)
    trace_examples: bool = _help("Record the example ids each process trained on (checks that "
                                 "data-parallel ranks see disjoint data).", False)

    def validate(self) -> None:
        _check(self.learning_rate > 0, "finetune.learning_rate", "must be > 0")
        _check(self.epochs > 0, "finetune.epochs", "must be > 0")
        _check(self.max_steps >= 0, "finetune.max_steps", "must be >= 0")
        _check(self.per_device_batch_size >= 1, "finetune.per_device_batch_size", "must be >= 1")
        _check(self.gradient_accumulation_steps >= 1, "finetune.gradient_accumulation_steps", "must be >= 1")
        _check(self.global_batch_size >= 0, "finetune.global_batch_size", "must be >= 0")
        _check(self.global_batch_size % self.per_device_batch_size == 0, "finetune.global_batch_size",
               f"must be a multiple of per_device_batch_size ({self.per_device_batch_size})")
        _check(self.max_length >= 8, "finetune.max_length", "must be >= 8 tokens")
        _check(self.warmup_steps >= 0, "finetune.warmup_steps", "must be >= 0")
        _check(self.weight_decay >= 0, "finetune.weight_decay", "must be >= 0")
        _check(self.max_grad_norm >= 0, "finetune.max_grad_norm", "must be >= 0")
        _check(self.logging_steps >= 1, "finetune.logging_steps", "must be >= 1")
        _check(self.save_steps >= 0, "finetune.save_steps", "must be >= 0")
        _check(self.dataloader_num_workers >= 0, "finetune.dataloader_num_workers", "must be >= 0")
        _check(bool(self.base_model.strip()), "finetune.base_model", "must not be empty")
        _check(self.lora.r >= 1, "finetune.lora.r", "must be >= 1")
        _check(self.lora.alpha >= 1, "finetune.lora.alpha", "must be >= 1")
        _check(0.0 <= self.lora.dropout < 1.0, "finetune.lora.dropout", "must be in [0, 1)")
        if self.accelerate_config is not None:
            _check(Path(self.accelerate_config).is_file(), "finetune.accelerate_config",
                   f"file not found: {self.accelerate_config}")



# --- generate / eval / dev sections (issue 5) ---


@dataclass(frozen=True)
class GenerateConfig:
    backend: Literal["auto", "hf", "openai", "vllm"] = _help(
        "`hf`: batched transformers generation in process; `openai`: an OpenAI-compatible "
        "/v1/completions endpoint (vLLM, llama.cpp, TGI...); `vllm`: vLLM's offline engine; "
        "`auto`: vllm when it is installed and a GPU is visible, else hf (the one used is recorded).",
        "auto")
    mode: Literal["instruct", "completion"] = _help(
        "Prompting of the fine-tuned model: `instruct` wraps the problem in the `prompt_style` eval "
        "prompt and extracts the code block; `completion` continues the bare prompt.", "completion")
    base_mode: Literal["instruct", "completion"] = _help(
        "Prompting of the base model in `eval_base`. Equal to `mode` for a like-for-like delta; the "
        "paper scores base models by continuation and WizardCoder by instruction.", "completion")
    prompt_style: Literal["wizardcoder", "wizardcoder-15b", "evalplus", "alpaca"] = _help(
        "Instruct-mode prompt and code extraction. `wizardcoder`: byte for byte WizardCoder's eval "
        "scripts (HumanEval: two blank lines, 4 spaces as tabs, answer up to a second `### Response:`; "
        "MBPP: text + every test assert; MBPP+: text + its assert; their post-processing and tab "
        "round-trip); `wizardcoder-15b`: the same with HumanEval's June 2023 template (one blank "
        "line), which made the 15B model's published generations; `evalplus`: evalplus's "
        "instruction/response prefixes in the Alpaca turns; `alpaca`: the training template, first "
        "`### Response:`, wider fence handling. Completion mode ignores it.",
        "wizardcoder")
    n: int = _help("Samples per task (pass@k needs n >= k).", 1)
    temperature: float = _help("0 = greedy decoding (the paper's pass@1); > 0 samples.", 0.0)
    top_p: float = _help("Nucleus top_p when sampling (WizardCoder: 0.95).", 0.95)
    max_new_tokens: int = _help("Max new tokens per sample (WizardCoder: 2048).", 128)
    batch_size: int = _help("Prompts per batch (hf); rows = batch_size x n.", 16)
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = _help(
        "Weights dtype (hf/vllm). `auto`: bfloat16 where the hardware has it natively (AVX512-BF16/AMX "
        "CPUs, bf16 GPUs), else float32 on CPU and float16 on GPU. The resolved dtype is recorded in "
        "the metrics.", "auto")
    device: str | None = _help("Torch device (hf); null = cuda if available, else cpu.", None)
    seed: int = _help("Sampling seed.", 0)
    stop: list[str] = _help("Extra stop strings (both modes); completion mode always stops at "
                            "`\\ndef `, `\\nclass `, `\\nif __name__`, `\\nprint(`, `\\n#`.", factory=list)
    early_stop: bool = _help("Stop a sequence as soon as more tokens cannot change its post-processed "
                             "code (closed ```python block / stop string); scores are unchanged.", True)
    base_url: str | list[str] | None = _help(
        "Endpoint for backend `openai`, e.g. http://localhost:8000/v1; a list of servers of the same "
        "model spreads the requests over them (as llm.base_url).", None)
    api_model: str | None = _help("Model name at the endpoint; null = the model argument as given.", None)
    api_key_env: str = _help("Environment variable holding the endpoint's API key.", "OPENAI_API_KEY")
    concurrency: int = _help("Requests in flight (backend `openai`).", 8)
    timeout_s: float = _help("Per-request timeout (backend `openai`).", 600.0)

    def validate(self) -> None:
        _check(self.n >= 1, "generate.n", "must be >= 1")
        _check(0.0 <= self.temperature <= 2.0, "generate.temperature", "must be in [0, 2]")
        _check(0.0 < self.top_p <= 1.0, "generate.top_p", "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")
        _check(self.batch_size >= 1, "generate.batch_size", "must be >= 1")
        _check(self.concurrency >= 1, "generate.concurrency", "must be >= 1")
        _check(self.timeout_s > 0, "generate.timeout_s", "must be > 0")
        _check(self.temperature > 0 or self.n == 1, "generate.n",
               f"is {self.n} but greedy decoding (temperature 0) gives n identical samples; "
               "set generate.temperature > 0")
        _check(all(self.stop), "generate.stop", "stop strings must not be empty")
        _check(self.backend != "openai" or bool(self.base_url), "generate.base_url",
               "is required for backend openai")
        check_base_urls(self.base_url, "generate.base_url")


@dataclass(frozen=True)
class EvalConfig:
    benchmarks: list[str] = _help(
        "Benchmarks to score: humaneval, humaneval+, mbpp (test split 11-510), mbpp+, mbpp-sanitized, "
        "multipl-e-{cpp,java,js,rs,go,sh}, mbpp-validation, dev.", factory=lambda: ["humaneval"])
    limit: int = _help("Score only the first N tasks of each benchmark (smoke runs); 0 = all.", 0)
    ks: list[int] = _help("pass@k values reported (those with k <= n).", factory=lambda: [1, 10, 100])
    workers: int = _help("Parallel sandbox workers; 0 = one per CPU.", 0)
    timeout_s: float = _help("Floor of the per-task execution time limit, seconds.", 3.0)
    data_dir: str | None = _help(
        "Local directory holding benchmark files (else $EVOLCODER_DATA_DIR, else downloads).", None)
    unsafe_rlimits_only: bool = _help(
        "Run model code even where no jail exists (not root and no unprivileged user namespaces): it "
        "could then delete your files, reach the network and leave processes. When false such a run "
        "stops with a message saying how to get a jail.", False)

    def validate(self) -> None:
        section = type(self).SECTION
        _check(bool(self.benchmarks), f"{section}.benchmarks", "must name at least one benchmark")
        _check(len(set(self.benchmarks)) == len(self.benchmarks), f"{section}.benchmarks", "has duplicates")
        for i, name in enumerate(self.benchmarks):
            _check(name in BENCHMARK_NAMES, f"{section}.benchmarks[{i}]",
                   f"unknown benchmark {name!r}; known: {', '.join(BENCHMARK_NAMES)}")
        _check(self.limit >= 0, f"{section}.limit", "must be >= 0")
        _check(bool(self.ks) and all(k >= 1 for k in self.ks), f"{section}.ks", "must be integers >= 1")
        _check(self.workers >= 0, f"{section}.workers", "must be >= 0")
        _check(self.timeout_s > 0, f"{section}.timeout_s", "must be > 0")

    SECTION: typing.ClassVar[str] = "eval"


@dataclass(frozen=True)
class DevConfig(EvalConfig):
    benchmarks: list[str] = _help(
        "The external dev set that decides evol-stop: `dev` (the project's own) or mbpp-validation.",
        factory=lambda: ["dev"])
    ks: list[int] = _help("pass@k values reported (those with k <= n).", factory=lambda: [1])

    SECTION: typing.ClassVar[str] = "dev"



# --- sections used by the whole pipeline ---
# SECTIONS maps each params.yaml section to its dataclass; helpers register theirs here.
SECTIONS: dict[str, type] = {
    "seed": SeedConfig,
    "evol": EvolConfig,
    "llm": LLMConfig,
    "merge": MergeConfig,
    "base_model": BaseModelConfig,
    "finetune": FinetuneConfig,
    "generate": GenerateConfig,
    "eval": EvalConfig,
    "dev": DevConfig,
}


def validate_all(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate every section and reject unknown top-level sections (typos like `finetnue`)."""
    data = load_yaml(params_path)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"params: {unknown[0]}: unknown section (known: {', '.join(SECTIONS)})")
    return {name: build(cls, data.get(name), name) for name, cls in SECTIONS.items()}
