"""Plain `/v1/completions` on any OpenAI-compatible server (vLLM, TGI, llama.cpp servers)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evolcoder.config import GenerateConfig, LLMConfig
from evolcoder.errors import EvolcoderError
from evolcoder.eval.backends.base import Done, Generation, OnBatch, Request


class OpenAIBackend:
    """The prompt is sent verbatim to the completions endpoint.

    The completions endpoint, not chat: the model must see exactly the Alpaca prompt it was
    trained on, not the server's chat template around it. Every sample is one request
    through the rounds' `LLMClient`, built by `make_client` like every other stage's: cached
    (a re-run pays nothing), retried with backoff and logged by cause, behind the circuit
    breaker, within `llm.max_calls` and priced by `llm.price_per_1k`. Sample `j` of a task
    is sent with seed `generate.seed + j`, so `n` samples are `n` distinct cached requests.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout_s: float = 600.0, llm: LLMConfig | None = None,
                 cache_path: str | Path | None = None, cache_model: str | None = None,
                 stage: str = "generate", progress: bool = False) -> None:
        from evolcoder.llm.client import cache_location

        self.base_url, self.model, self.cache_model = base_url, model, cache_model or model
        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.llm = llm or LLMConfig()
        self.cache_path = Path(cache_path or cache_location(self.llm))
        self.stage, self.progress = stage, progress
        self.usage: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: GenerateConfig, model: str, *, llm: LLMConfig, cache_path: str | Path | None,
                    stage: str, progress: bool) -> OpenAIBackend:
        """The endpoint of `generate.base_url`; a local model directory served there is cached
        under its served name plus a hash of the directory, so new weights are new requests."""
        from evolcoder.eval.provenance import model_fingerprint

        api_model = cfg.api_model or model
        cache_model = f"{api_model}@{model_fingerprint(model)}" if Path(model).is_dir() else api_model
        return cls(cfg.base_url or "", api_model, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency,
                   timeout_s=cfg.timeout_s, llm=llm, cache_path=cache_path, cache_model=cache_model, stage=stage,
                   progress=progress)

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
        from evolcoder.llm.client import make_client
        from evolcoder.llm.openai_provider import OpenAICompletionsProvider

        provider = OpenAICompletionsProvider(self.cache_model, api_model=self.model, base_url=self.base_url,
                                             timeout_s=self.timeout_s, concurrency=self.concurrency,
                                             api_key=self.api_key)
        return make_client(_with_concurrency(self.llm, self.concurrency), stage=self.stage,
                           cache_path=str(self.cache_path), provider=provider)

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


def _with_concurrency(llm: LLMConfig, concurrency: int) -> LLMConfig:
    """`llm` with `generate.concurrency` requests in flight: the eval's own setting, while
    the retry policy, call cap and prices stay the `llm` section's."""
    if hasattr(llm, "model_copy"):  # the config models may be pydantic ones
        return llm.model_copy(update={"concurrency": concurrency})  # type: ignore[no-any-return]
    return dataclasses.replace(llm, concurrency=concurrency)
