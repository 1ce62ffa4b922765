"""In-process transformers generation through the shared loop (`evolcoder.hf.generation`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evolcoder.config import GenerateConfig
from evolcoder.eval.backends.base import Done, Generation, OnBatch, Request


class HFBackend:
    """Batched transformers generation: left padding, prompts sorted by length so a batch
    wastes little on padding, per-sequence early stop.

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
        from evolcoder.eval.provenance import model_fingerprint

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
