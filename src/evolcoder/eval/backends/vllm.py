"""vLLM's embedded offline engine (GPU machines); stop strings are applied by vLLM itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evolcoder.config import GenerateConfig
from evolcoder.errors import ConfigError
from evolcoder.eval.backends.base import Done, Generation, OnBatch, Request

VLLM_CHUNK = 256  # prompts per vLLM call: enough to keep its scheduler full, few enough to journal often


class VLLMBackend:
    """One engine in process; prompts go in chunks so each finished chunk is journaled."""

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
        from evolcoder.eval.provenance import model_fingerprint

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
