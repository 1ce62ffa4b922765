"""Generation backends: in-process transformers (`hf`), vLLM's embedded offline engine
(`vllm`) and any OpenAI-compatible `/v1/completions` endpoint (`openai`).

`make_backend` is the one door: it checks the model once, resolves `auto`, and imports only
the backend it builds (vLLM and torch are heavy, and absent on many machines).
"""

from __future__ import annotations

from pathlib import Path

from evolcoder.config import GenerateConfig, LLMConfig
from evolcoder.eval.backends.base import Backend, Done, Generation, OnBatch, Request

__all__ = ["Backend", "Done", "Generation", "OnBatch", "Request", "make_backend", "resolve_backend"]


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
                 cache_path: str | Path | None = None, stage: str = "generate", local: bool = False) -> Backend:
    """The backend `generate.backend` names, after `check_model` (`local`: the model must be a
    directory). The endpoint backend goes through `make_client` on the completion cache at
    `cache_path` (default: where `llm.cache` points), with the retry policy, call cap and
    prices of `llm`, its rows labelled `stage`."""
    from evolcoder.eval.provenance import check_model

    check_model(model, cfg.backend, local=local)
    backend = resolve_backend(cfg.backend)
    if backend == "hf":
        from evolcoder.eval.backends.hf import HFBackend

        return HFBackend(model, dtype=cfg.dtype, device=cfg.device, progress=progress)
    if backend == "openai":
        from evolcoder.eval.backends.openai import OpenAIBackend

        return OpenAIBackend.from_config(cfg, model, llm=llm or LLMConfig(), cache_path=cache_path, stage=stage,
                                         progress=progress)
    from evolcoder.eval.backends.vllm import VLLMBackend

    return VLLMBackend(model, dtype=cfg.dtype, seed=cfg.seed)
