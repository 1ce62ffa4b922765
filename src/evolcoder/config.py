"""Typed, validated settings: one frozen pydantic model per `params.yaml` section.

`Params.load` parses the file once and validates every section, so a typo anywhere (say
`eval.benchmarks: [humaneval, nosuchbench]`) fails the first stage that runs, before any
LLM call or GPU hour is paid for. Models are strict (no "3" for 3, no true for 1.0) and
reject unknown keys; every error names the key as `params: section.key[i]: ...` and the
file it came from. Field descriptions are the documentation `evolcoder params` prints.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evolcoder.errors import ConfigError
from evolcoder.suites import BENCHMARK_NAMES


class Invalid(Exception):
    """A cross-field check failed; `key` is relative to the section (pydantic does not wrap it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise Invalid(key, message)


def _known_benchmark(name: str) -> str:
    if name not in BENCHMARK_NAMES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARK_NAMES)}")
    return name


def _nonblank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _endpoints(value: str | list[str] | None) -> str | list[str] | None:
    """One http(s) URL, or a non-empty list of distinct ones (replicas serving the same model)."""
    if value is None:
        return value
    urls = [value] if isinstance(value, str) else value
    if not urls:
        raise ValueError("an empty list; give one URL, several, or null")
    for i, url in enumerate(urls):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            where = "" if isinstance(value, str) else f"item {i}: "
            raise ValueError(f"{where}{url!r} is not an http(s) URL such as http://localhost:8000/v1")
    if len(set(urls)) != len(urls):
        raise ValueError("lists the same URL twice")
    return value


Benchmark = Annotated[str, AfterValidator(_known_benchmark)]
BaseUrls = Annotated[str | list[str] | None, AfterValidator(_endpoints)]
Text = Annotated[str, AfterValidator(_nonblank)]
Weight = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(gt=0, le=1)]


def F(default: Any, description: str, hf: str | None = None, **constraints: Any) -> Any:  # noqa: N802
    """A field with its help text (pydantic copies mutable defaults per instance). `hf` names the
    `transformers.TrainingArguments` field it is passed as, so that mapping is written once."""
    return Field(default, description=description, json_schema_extra={"hf": hf} if hf else None, **constraints)


class Section(BaseModel):
    """Base of every section: strict types, no unknown keys, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SeedConfig(Section):
    path: str = F("src/evolcoder/resources/seed.jsonl", "Seed instructions: a Code Alpaca JSON array, a JSONL "
                  "file or a saved `datasets` directory, which DVC hashes; snapshot a Hugging Face dataset id "
                  "to a file first with `evolcoder export-seed`.")
    n: int = F(16, "How many seed records to sample; 0 keeps all.", ge=0)
    seed: int = F(42, "RNG seed for sampling seed records.")
    on_error: Literal["fail", "skip"] = F(
        "fail", "What to do with an invalid seed record: `fail` stops with file:line, `skip` skips and counts it "
        "(undecodable JSONL lines too; their line numbers go to metrics/seed.json). Invalid JSON inside a "
        "JSON array always stops: the rest of the array cannot be located.")
    split: str = F("train", "Split to read when `path` is a Hugging Face dataset.")


class RoundOverride(Section):
    seed: int | None = F(None, "RNG seed for this round only (default: evol.seed).")
    methods: dict[str, Weight] | None = F(None, "Heuristic weights for this round only (replace evol.methods).")
    heuristics: dict[str, Text] | None = F(
        None, "Heuristic texts reworded or added for this round only (merged over evol.heuristics).")


class EvolConfig(Section):
    rounds: int = F(3, "Number of evolution rounds (the paper peaked near 3).", ge=0)
    seed: int = F(1234, "Base RNG seed: the method of an item is drawn from (seed, round, item id).")
    methods: dict[str, Weight] = F(
        {"constraints": 1.0, "rare_requirement": 1.0, "reasoning_steps": 1.0, "erroneous_code": 1.0,
         "complexity": 0.5},
        "Weight of each heuristic by name (the paper's five, or ones added under evol.heuristics); 0 disables one.")
    heuristics: dict[str, Text] = F(
        {}, "Heuristic texts that reword one of the paper's five (same name) or add one (new name, then give "
        "it a weight in evol.methods); merged over src/evolcoder/evolution/templates.yaml.")
    template: str | None = F(
        None, "The evolution prompt with {method} and {question}; null = the paper's template verbatim.")
    per_round: dict[str, RoundOverride] = F(
        {}, "Overrides keyed `r<N>` (e.g. r3: {seed: 7}); only that round and later ones re-run.")
    llm_equality_check: bool = F(
        False, "Also ask the LLM whether an evolved instruction equals its parent (costs one call per item).")
    min_sorry_words: int = F(80, "A response containing 'sorry' shorter than this many words is eliminated.")
    similarity_threshold: Share = F(
        0.95, "Evolved instructions at least this similar to their parent (difflib ratio) are eliminated.")
    drop_truncated: bool = F(
        True, "Eliminate evolutions whose instruction or response was cut off at evolver.max_tokens "
        "(not a WizardLM rule; off reproduces the paper's filter exactly).")
    verify: Literal["off", "tests", "tests+mutants"] = F(
        "tests", "Execution-verify each answer in the sandbox: `tests` runs the answer's own asserts/test "
        "functions and unit tests an extra LLM call writes from the evolved instruction alone; "
        "`tests+mutants` also requires those tests to kill one of evol.verify_mutants AST mutants of "
        "the solution; `off` is the paper's recipe (nothing is run).")
    verify_eliminate: bool = F(
        False, "Eliminate items that fail verification; false only measures (verdicts and figures are "
        "recorded, nothing is dropped and nothing is answered again).")
    verify_attempts: int = F(
        1, "Re-answers, each with a different seed, of an item that fails verification before it is "
        "eliminated (0 = eliminate at the first failure).", ge=0)
    verify_mutants: int = F(4, "Mutants per solution with `tests+mutants` (K).", ge=1)
    verify_timeout_s: float = F(5.0, "Sandbox time limit per item (solution + all its tests), seconds.", gt=0)
    verify_memory_mb: int = F(512, "Sandbox memory limit per item, MiB.", ge=64)

    @field_validator("verify", mode="before")
    @classmethod
    def _bare_off(cls, value: Any) -> Any:
        """YAML 1.1 (and `dvc exp run -S evol.verify=off`) read a bare `off` as false."""
        _check(value is not True, "verify", "must be off, tests or tests+mutants, got true")
        return "off" if value is False else value

    @model_validator(mode="after")
    def _check_rounds(self) -> "EvolConfig":
        _check(sum(self.methods.values()) > 0, "methods", "at least one method needs a positive weight")
        for key, override in self.per_round.items():
            _check(key.startswith("r") and key[1:].isdigit() and int(key[1:]) >= 1,
                   f"per_round.{key}", "keys must be r1, r2, ...")
            _check(override.methods is None or sum(override.methods.values()) > 0,
                   f"per_round.{key}.methods", "at least one method needs a positive weight")
        return self


class EvolverConfig(Section):
    """Who evolves and answers: every model setting that changes a completion.

    This section goes into each round's plan as it is, so changing any of it re-runs the
    rounds; the `llm` section (transport) never does.
    """

    provider: Literal["openai", "transformers"] = F(
        "transformers", "`openai`: any OpenAI-compatible chat endpoint; `transformers`: an in-process "
        "Hugging Face model.")
    model: str = F("embedded:gemma-3-270m", "Model name at the endpoint, or `embedded:gemma-3-270m` / a model "
                   "directory / a hub id for transformers.")
    base_url: BaseUrls = F(
        None, "Endpoint base URL (vLLM, Ollama, llama.cpp...); null means OpenAI. A list of URLs serving the "
        "same model spreads requests over them (fewest in flight first; a dead one is taken out of "
        "rotation and retried later).")
    temperature: float = F(0.7, "Sampling temperature for evolution and answers.", ge=0, le=2)
    top_p: Share = F(0.95, "Nucleus sampling top_p.")
    max_tokens: int = F(256, "Max new tokens per completion (the paper preset: 2048).", ge=1)
    seed: int = F(0, "Sampling seed sent with each request (part of the cache key).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = F(
        "auto", "Weights dtype of the in-process evolver (provider transformers). `auto`: bfloat16 where the "
        "hardware has it natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else float32 on CPU and float16 on "
        "GPU; emulated bf16 is ~4x slower than fp32 on an AVX2-only CPU. The resolved dtype is part of "
        "the cache's model name and is recorded in the round stats.")


class LLMTransport(Section):
    """How requests travel: none of this changes a completion, so none of it enters a plan."""

    concurrency: int = F(16, "Requests in flight at once (openai) or batch size (transformers).", ge=1)
    timeout_s: float = F(120.0, "Per-request timeout in seconds.", gt=0)
    max_attempts: int = F(6, "Attempts per request on 429/5xx/timeouts (exponential backoff, jitter).", ge=1)
    backoff_s: float = F(1.0, "First retry delay in seconds; doubles per attempt (jittered, capped at 60 s). "
                         "A server's Retry-After replaces it.", ge=0)
    cache: str = F(".evolcoder/cache.sqlite", "SQLite completion cache shared by all stages (git-ignored, outside "
                   "DVC outs). $EVOLCODER_CACHE overrides it, e.g. an absolute path for `dvc exp run "
                   "--temp/--queue`, whose temporary workspaces would otherwise start with an empty cache.")
    max_calls: int = F(0, "Stop cleanly after this many paid (uncached) calls in one stage; 0 = unlimited.", ge=0)
    price_per_1k: dict[Literal["prompt", "completion"], float] | None = F(
        None, "Optional prices per 1k tokens: {prompt: x, completion: y}, for the cost estimate.")
    max_consecutive_failures: int = F(
        10, "Circuit breaker: stop the stage when this many requests in a row failed after all their "
        "attempts (an outage, not a bad item), and at once on a refused connection or unknown host "
        "before anything was answered; 0 turns both off.", ge=0)
    max_failed_fraction: float = F(
        0.0, "Share of a round's items that may fail transiently (after retries) with the round still "
        "written as done; 0 = any such failure fails the round so a re-run retries it.", ge=0, lt=1)
    mode: Literal["online", "batch"] = F(
        "online", "`online`: one live chat call per request; `batch`: the round stage (and eval generation "
        "through the OpenAI-compatible backend) submits its uncached requests through the endpoint's "
        "Batch API (/v1/files + /v1/batches: OpenAI bills half, answers within 24 h). Same cache "
        "keys, so the data are byte-identical either way and a run can switch modes half-way.")
    batch_poll_s: float = F(30.0, "Batch mode: seconds between polls of in-flight batches.", gt=0)
    batch_wait: bool = F(
        True, "Batch mode: wait for the batches to finish. false: submit, write nothing and exit 5 "
        "(\"N batches in flight; run `dvc repro` again later\").")
    batch_max_requests: int = F(50000, "Batch mode: requests per batch file (OpenAI's limit: 50,000).",
                                ge=1, le=50000)
    batch_max_mb: float = F(200.0, "Batch mode: size of one batch input file in MB (OpenAI's limit: 200).",
                            gt=0, le=200)
    rpm: float = F(0.0, "Requests per minute to stay under (a provider's rate limit); 0 = only what the "
                   "provider's x-ratelimit-* headers say.", ge=0)
    tpm: float = F(0.0, "Tokens per minute to stay under (prompt + max_tokens per request, as OpenAI counts "
                   "them); 0 = only what the provider's headers say.", ge=0)
    budget_usd: float | None = F(
        None, "Hard cap in USD on what one stage may spend on new (uncached) calls; the worst case of "
        "each request (prompt-token bound + max_tokens) is reserved before it is sent. "
        "null = no cap. Needs a known price (built-in table or llm.price_per_1k).", ge=0)


class LLMConfig(LLMTransport, EvolverConfig):
    """What a client is built from: the evolver's identity plus the `llm` transport settings."""

    @classmethod
    def of(cls, evolver: EvolverConfig, transport: LLMTransport) -> "LLMConfig":
        fields = set(EvolverConfig.model_fields)
        return cls(**{k: getattr(evolver, k) for k in fields}, **transport.model_dump())


_EVALUATED = ["humaneval", "humaneval+", "mbpp", "mbpp+", "multipl-e-cpp", "multipl-e-java", "multipl-e-js",
              "multipl-e-rs", "multipl-e-go", "multipl-e-sh", "dev"]


class MergeConfig(Section):
    ngram: int = F(10, "n-gram size for benchmark decontamination (word n-grams).", ge=3)
    decontaminate: list[Benchmark] = F(
        _EVALUATED, "Benchmarks whose prompts, canonical programs and test cases must not leak into training "
        "data (instructions and answers); `mbpp` means all 974 MBPP tasks.")
    data_dir: str | None = F(
        None, "Local directory holding benchmark files (else $EVOLCODER_DATA_DIR, else the packaged copies).")
    dedup_threshold: Share = F(
        0.65, "Near-duplicate removal between records of different lineages (root_id): drop a record whose "
        "instruction + input has at least this Jaccard similarity (word shingles) with an earlier kept "
        "one; an evolution and its ancestors are never compared. 1.0 drops only identical shingle sets.")
    shingle_size: int = F(2, "Words per shingle for near-duplicate detection (shingles are padded at both ends).",
                          ge=1)
    code_kgram: int = F(10, "Tokens per k-gram of the renaming-invariant code fingerprint.", ge=4)
    code_containment: Share = F(
        0.8, "Drop a record whose instruction or answer contains at least this share of a benchmark "
        "program's fingerprint k-grams.")
    code_min_kgrams: int = F(
        8, "Benchmark programs with fewer distinctive k-grams than this are too generic to fingerprint "
        "without false positives and are left to the text and test-case detectors.", ge=1)
    example_min_chars: int = F(
        10, "A benchmark test case's arguments of at least this many characters (whitespace removed) "
        "match on their own; shorter ones need the expected value beside them.", ge=1)
    seed_license: Text = F(
        "auto", "Licence of the seed set, written into the dataset card; `auto` recognises the project's "
        "seed (Apache-2.0) and Code Alpaca (CC BY-NC 4.0) from seed.path.")
    match: Literal["samples", "tokens"] | None = F(
        None, "Complexity-vs-quantity control (the paper's arm): null trains on everything kept; `samples` "
        "on evolved records only (round >= 1), subsampled to the seed set's record count; `tokens` "
        "to its token count (base_model.source's tokenizer, Alpaca-formatted text), within one record.")
    match_seed: int = F(0, "Seed of merge.match's subsample.")


class BaseModelConfig(Section):
    source: Text = F("embedded:gemma-3-270m", "Base model: `embedded:gemma-3-270m` (offline, converted once), "
                     "a local model directory (referenced, not copied) or a Hugging Face hub id.")


class LoraSettings(Section):
    enabled: bool = F(True, "Train LoRA adapters (peft) instead of all weights.")
    r: int = F(16, "LoRA rank.", ge=1)
    alpha: int = F(32, "LoRA alpha (scale = alpha / r).", ge=1)
    dropout: float = F(0.05, "Dropout on the LoRA path.", ge=0, lt=1)
    target_modules: list[str] | str = F("all-linear", "Modules to adapt; `all-linear` adapts every linear "
                                        "layer except the output head.")
    merge: bool = F(True, "Merge adapters into the weights when saving, so later stages load a plain "
                    "model; false saves the adapter alone beside a reference to the base.")


class FinetuneConfig(Section):
    base_model: Text = F("models/base", "Model to fine-tune: the `base_model` stage output, a model directory "
                         "or a hub id.")
    learning_rate: float = F(2e-4, "Peak learning rate (WizardCoder: 2e-5; the LoRA laptop default: 2e-4).",
                             "learning_rate", gt=0)
    epochs: float = F(1.0, "Passes over the training data (WizardCoder: 3).", "num_train_epochs", gt=0)
    max_steps: int = F(6, "Stop after this many optimizer steps; 0 = run `epochs`.", ge=0)
    per_device_batch_size: int = F(2, "Sequences per device per micro-batch.", "per_device_train_batch_size", ge=1)
    gradient_accumulation_steps: int = F(1, "Micro-batches per optimizer step (ignored when "
                                         "global_batch_size is set).", ge=1)
    global_batch_size: int = F(0, "Sequences per optimizer step over all processes; 0 = use "
                               "gradient_accumulation_steps. Must be divisible by per_device_batch_size x "
                               "processes (WizardCoder: 512).", ge=0)
    max_length: int = F(512, "Max tokens per training sequence (WizardCoder: 2048).", ge=8)
    overlong: Literal["truncate", "drop"] = F(
        "truncate", "Examples longer than max_length: `truncate` the response, or `drop` them. Examples whose "
        "prompt alone does not fit are always dropped and counted.")
    packing: bool = F(True, "Pack several examples per sequence; attention and loss never cross example "
                      "boundaries (position ids restart per example).")
    warmup_steps: int = F(1, "Linear warmup steps (WizardCoder: 30).", "warmup_steps", ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = F(
        "cosine", "Learning-rate schedule after warmup.", "lr_scheduler_type")
    weight_decay: float = F(0.0, "AdamW weight decay.", "weight_decay", ge=0)
    max_grad_norm: float = F(1.0, "Gradient clipping norm; 0 disables clipping.", "max_grad_norm", ge=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = F(
        "auto", "Mixed precision with fp32 master weights. `auto`: bf16 where the GPU or CPU supports it "
        "natively, else fp16 on GPU, fp32 on CPU.")
    gradient_checkpointing: bool = F(False, "Recompute activations in backward to save memory.")
    response_logits_only: bool = F(
        True, "Compute the output layer only at positions whose next token is learned (response tokens): "
        "same loss, far less work with large vocabularies. Falls back to full logits for models whose "
        "forward cannot select positions.")
    attn_implementation: str = F("sdpa", "Attention kernel: sdpa, eager, flash_attention_2...")
    lora: LoraSettings = F(LoraSettings(), "LoRA (peft) settings.")
    seed: int = F(42, "Seed for init of new weights, data order and dropout.", "seed")
    logging_steps: int = F(1, "Log loss / learning rate / tokens per second every N steps.", "logging_steps", ge=1)
    save_steps: int = F(0, "Checkpoint every N steps so a crashed run resumes; 0 = never.", ge=0)
    checkpoint_dir: str = F(".evolcoder/checkpoints/finetune", "Where resumable checkpoints live (outside DVC "
                            "outputs, git-ignored).")
    resume: bool = F(True, "Resume from the newest checkpoint of an identical run (same config and data); a "
                     "changed config or dataset starts afresh.")
    accelerate_config: str | None = F(
        None, "An `accelerate` config file (configs/accelerate/*.yaml: multi-GPU, FSDP, DeepSpeed). When "
        "set, the stage relaunches itself under `accelerate launch --config_file` it.")
    dataloader_num_workers: int = F(0, "DataLoader worker processes.", "dataloader_num_workers", ge=0)
    trace_examples: bool = F(False, "Record the example ids each process trained on (checks that "
                             "data-parallel ranks see disjoint data).")

    def hf_arguments(self) -> dict[str, Any]:
        """The fields passed to `TrainingArguments` as they are, under its names (their `hf=`)."""
        return {info.json_schema_extra["hf"]: getattr(self, name)  # type: ignore[index]
                for name, info in type(self).model_fields.items() if info.json_schema_extra}

    @model_validator(mode="after")
    def _check_batches(self) -> "FinetuneConfig":
        _check(self.global_batch_size % self.per_device_batch_size == 0, "global_batch_size",
               f"must be a multiple of per_device_batch_size ({self.per_device_batch_size})")
        _check(self.accelerate_config is None or Path(self.accelerate_config).is_file(), "accelerate_config",
               f"file not found: {self.accelerate_config}")
        return self


class GenerateConfig(Section):
    backend: Literal["auto", "hf", "openai", "vllm"] = F(
        "auto", "`hf`: batched transformers generation in process; `openai`: an OpenAI-compatible "
        "/v1/completions endpoint (vLLM, llama.cpp, TGI...); `vllm`: vLLM's offline engine; `auto`: vllm "
        "when it is installed and a GPU is visible, else hf (the one used is recorded).")
    mode: Literal["instruct", "completion"] = F(
        "completion", "Prompting of the fine-tuned model: `instruct` wraps the problem in the `prompt_style` "
        "eval prompt and extracts the code block; `completion` continues the bare prompt.")
    base_mode: Literal["instruct", "completion"] = F(
        "completion", "Prompting of the base model in `eval_base`. Equal to `mode` for a like-for-like delta; "
        "the paper scores base models by continuation and WizardCoder by instruction.")
    prompt_style: Literal["wizardcoder", "wizardcoder-15b", "evalplus", "alpaca"] = F(
        "wizardcoder", "Instruct-mode prompt and code extraction. `wizardcoder`: byte for byte WizardCoder's "
        "eval scripts (HumanEval: two blank lines, 4 spaces as tabs, answer up to a second `### Response:`; "
        "MBPP: text + every test assert; MBPP+: text + its assert; their post-processing and tab "
        "round-trip); `wizardcoder-15b`: the same with HumanEval's June 2023 template (one blank line), "
        "which made the 15B model's published generations; `evalplus`: evalplus's instruction/response "
        "prefixes in the Alpaca turns; `alpaca`: the training template, first `### Response:`, wider fence "
        "handling. Completion mode ignores it.")
    n: int = F(1, "Samples per task (pass@k needs n >= k).", ge=1)
    temperature: float = F(0.0, "0 = greedy decoding (the paper's pass@1); > 0 samples.", ge=0, le=2)
    top_p: Share = F(0.95, "Nucleus top_p when sampling (WizardCoder: 0.95).")
    max_new_tokens: int = F(128, "Max new tokens per sample (WizardCoder: 2048).", ge=1)
    batch_size: int = F(32, "Prompts per batch (hf); rows = batch_size x n.", ge=1)
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = F(
        "auto", "Weights dtype (hf/vllm). `auto`: bfloat16 where the hardware has it natively (AVX512-BF16/AMX "
        "CPUs, bf16 GPUs), else float32 on CPU and float16 on GPU. The resolved dtype is recorded in the "
        "metrics.")
    device: str | None = F(None, "Torch device (hf); null = cuda if available, else cpu.")
    seed: int = F(0, "Sampling seed.")
    stop: list[Text] = F([], "Extra stop strings (both modes); completion mode always stops at `\\ndef `, "
                         "`\\nclass `, `\\nif __name__`, `\\nprint(`, `\\n#`.")
    early_stop: bool = F(True, "Stop a sequence as soon as more tokens cannot change its post-processed code "
                         "(closed ```python block / stop string); scores are unchanged.")
    base_url: BaseUrls = F(
        None, "Endpoint for backend `openai`, e.g. http://localhost:8000/v1; a list of servers of the same "
        "model spreads the requests over them (as evolver.base_url).")
    api_model: str | None = F(None, "Model name at the endpoint; null = the model argument as given.")
    api_key_env: str = F("OPENAI_API_KEY", "Environment variable holding the endpoint's API key.")
    concurrency: int = F(8, "Requests in flight (backend `openai`).", ge=1)
    timeout_s: float = F(600.0, "Per-request timeout (backend `openai`).", gt=0)

    @model_validator(mode="after")
    def _check_sampling(self) -> "GenerateConfig":
        _check(self.temperature > 0 or self.n == 1, "n", f"is {self.n} but greedy decoding (temperature 0) "
               "gives n identical samples; set generate.temperature > 0")
        _check(self.backend != "openai" or bool(self.base_url), "base_url", "is required for backend openai")
        return self


class EvalConfig(Section):
    benchmarks: list[Benchmark] = F(
        ["humaneval"], "Benchmarks to score: humaneval, humaneval+, mbpp (test split 11-510), mbpp+, "
        "mbpp-sanitized, multipl-e-{cpp,java,js,rs,go,sh}, mbpp-validation, dev.", min_length=1)
    limit: int = F(0, "Score only the first N tasks of each benchmark (smoke runs); 0 = all.", ge=0)
    ks: list[Annotated[int, Field(ge=1)]] = F([1, 10, 100], "pass@k values reported (those with k <= n).",
                                              min_length=1)
    timeout_s: float = F(3.0, "Floor of the per-task execution time limit, seconds.", gt=0)
    data_dir: str | None = F(
        None, "Local directory holding benchmark files (else $EVOLCODER_DATA_DIR, else downloads).")

    SECTION: ClassVar[str] = "eval"

    @model_validator(mode="after")
    def _check_unique(self) -> "EvalConfig":
        _check(len(set(self.benchmarks)) == len(self.benchmarks), "benchmarks", "has duplicates")
        return self


class DevConfig(EvalConfig):
    benchmarks: list[Benchmark] = F(
        ["dev"], "The external dev set that decides evol-stop: `dev` (the project's own) or mbpp-validation.",
        min_length=1)
    ks: list[Annotated[int, Field(ge=1)]] = F([1], "pass@k values reported (those with k <= n).", min_length=1)

    SECTION: ClassVar[str] = "dev"


class SandboxConfig(Section):
    """Where model-written code runs: worker counts and the no-jail opt-in, for every stage that runs it.

    Transport only: none of it enters a round plan or changes a score.
    """

    workers: int = F(0, "Parallel sandbox workers of the eval stages (eval_base, eval, dev); 0 = one per CPU.",
                     ge=0)
    verify_workers: int = F(2, "Sandbox workers verifying answers during evolution (evol.verify).", ge=1)
    unsafe_rlimits_only: bool = F(
        False, "Run model code even where no jail exists (not root and no unprivileged user namespaces): it "
        "could then delete your files, reach the network and leave processes. When false such a run stops "
        "with a message saying how to get a jail.")


class Params(BaseModel):
    """The whole params file, every section validated; `Params.load` is the one way in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: SeedConfig = SeedConfig()
    evol: EvolConfig = EvolConfig()
    evolver: EvolverConfig = EvolverConfig()
    llm: LLMTransport = LLMTransport()
    sandbox: SandboxConfig = SandboxConfig()
    merge: MergeConfig = MergeConfig()
    base_model: BaseModelConfig = BaseModelConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    generate: GenerateConfig = GenerateConfig()
    eval: EvalConfig = EvalConfig()
    dev: DevConfig = DevConfig()

    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> "Params":
        """Parse and validate the whole file (once per process and file version)."""
        stat = Path(path).stat() if Path(path).is_file() else None
        return _load(str(Path(path).resolve()), stat and (stat.st_mtime_ns, stat.st_size), str(path))

    @classmethod
    def build(cls, data: dict[str, Any], where: str = "") -> "Params":
        for old, new in _MOVED.items():
            section, key = old.split(".")
            if isinstance(data.get(section), dict) and key in data[section]:
                raise ConfigError(f"params: {old}: moved to {new}{where}")
        unknown = sorted(set(map(str, data)) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"params: {unknown[0]}: unknown section (known: {', '.join(cls.model_fields)})"
                              + where)
        sections = {}
        for name, info in cls.model_fields.items():
            try:
                sections[name] = build(info.annotation, data.get(name), name)
            except ConfigError as exc:
                raise ConfigError(f"{exc}{where}") from None
        return cls(**sections)

    def llm_config(self) -> LLMConfig:
        """The evolver's client settings: identity from `evolver`, transport from `llm`."""
        return LLMConfig.of(self.evolver, self.llm)


# Keys that changed section: an older params file gets told where each one lives now.
_MOVED = {**{f"llm.{key}": f"evolver.{key}" for key in EvolverConfig.model_fields},
          "evol.verify_workers": "sandbox.verify_workers",
          "evol.verify_unsafe_rlimits_only": "sandbox.unsafe_rlimits_only",
          **{f"{section}.{key}": f"sandbox.{key}" for section in ("eval", "dev")
             for key in ("workers", "unsafe_rlimits_only")}}


@functools.lru_cache(maxsize=8)
def _load(resolved: str, version: Any, shown: str) -> Params:
    return Params.build(load_yaml(shown), f" (in {shown})")


SECTIONS: dict[str, type[Section]] = {name: info.annotation for name, info in Params.model_fields.items()}

S = TypeVar("S", bound=BaseModel)

_MESSAGES = {
    "extra_forbidden": "unknown key{known}", "int_type": "expected an integer, got {input!r}",
    "float_type": "expected a number, got {input!r}", "bool_type": "expected true/false, got {input!r}",
    "string_type": "expected a string, got {input!r}", "list_type": "expected a list, got {input!r}",
    "dict_type": "expected a mapping, got {input!r}", "model_type": "expected a mapping, got {input!r}",
    "literal_error": "must be one of {expected}, got {input!r}", "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}", "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "too_short": "must not be empty", "value_error": "{error}",
}


_UNION_TAGS = {"str", "int", "float", "bool", "function-after", "function-before", "literal", "lax-or-strict"}


def _message(exc: ValidationError, section: str, cls: type[BaseModel]) -> str:
    """The first error as `params: section.key[i]: message`, union member tags dropped."""
    err = exc.errors(include_url=False)[0]
    key = section
    for part in err["loc"]:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not ("[" in part or part in _UNION_TAGS):
            key += f".{part}"
    known = f" (known: {', '.join(cls.model_fields)})" if len(err["loc"]) == 1 else ""
    text = _MESSAGES.get(err["type"], err["msg"])
    return f"params: {key}: " + text.format(known=known, input=err.get("input"), **(err.get("ctx") or {}))


def build(cls: type[S], data: Any, section: str) -> S:
    """Validate one section's mapping into `cls`, naming the offending key on any error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params: {section}: expected a mapping, got {data!r}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc, section, cls)) from None
    except Invalid as exc:
        raise ConfigError(f"params: {section}.{exc.key}: {exc.message}") from None


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
    """One section of the fully validated file; `LLMConfig` from "llm" is the evolver's client settings."""
    params = Params.load(params_path)
    if cls is LLMConfig and section == "llm":
        return params.llm_config()  # type: ignore[return-value]
    return getattr(params, section)


def validate_all(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate every section and reject unknown top-level sections (typos like `finetnue`)."""
    params = Params.load(params_path)
    return {name: getattr(params, name) for name in SECTIONS}


def to_dict(obj: BaseModel) -> dict[str, Any]:
    """The resolved config as plain data, to be saved beside what it produced."""
    return obj.model_dump()


def describe(cls: type[BaseModel]) -> list[tuple[str, str, Any]]:
    """(name, help, default) for every field, for `evolcoder params`."""
    rows = []
    for name, info in cls.model_fields.items():
        default = info.get_default(call_default_factory=True)
        rows.append((name, info.description or "", default.model_dump() if isinstance(default, BaseModel)
                     else default))
    return rows
