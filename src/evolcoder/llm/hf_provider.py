"""An in-process Hugging Face causal LM as a provider, with micro-batched generation.

Requests that arrive together (the client keeps up to `llm.concurrency` in flight) are
grouped into one left-padded `generate()` call of up to `llm.concurrency` prompts with the
same sampling settings. Generation runs in a worker thread, so the event loop keeps
accepting requests, serving cache hits and writing results meanwhile.

Prompts: a tokenizer with a chat template gets the messages through it; a base model
without one gets a plain completion prompt with one worked example (instruction ->
response) and generation stops at the next `### Instruction:` or `### Response:` marker
(a base model asked to rewrite a question otherwise goes on to answer it). The prompt
format's version is part of the cache's model name, so changing it never serves stale
completions.

Speed on CPU: weights are held in bf16 and run under bf16 autocast (about 2x faster than
fp32 here), and stop strings are checked on the last few decoded tokens only.

Reproducibility: sampling is seeded per batch from the requests' seeds and contents, so a
re-run with the same batch composition reproduces the same texts. Batched sampling is
*not* bitwise independent of batch composition (padding and batch-shaped kernels change
the numerics), so the same request may sample differently next to other neighbours; the
completion cache is what makes re-runs identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.config import LLMConfig
from evolcoder.llm.base import PLAIN_FORMAT, ChatRequest, Completion

STOP_MARKER = "### Instruction:"
RESPONSE_MARKER = "### Response:"
EXAMPLE_INSTRUCTION = "Write a Python function that returns the sum of the squares of a list of numbers."
EXAMPLE_RESPONSE = (
    "```python\ndef sum_of_squares(numbers):\n    return sum(n * n for n in numbers)\n```\n"
    "The generator expression squares each number and `sum` adds them up in one pass."
)
COLLECT_WINDOW_S = 0.01


def plain_prompt(messages: tuple[tuple[str, str], ...]) -> str:
    """A completion prompt for base models: system text, one worked example, then the turns."""
    system = "\n\n".join(c for r, c in messages if r == "system")
    parts = [system + "\n\n"] if system else []
    parts.append(f"{STOP_MARKER}\n{EXAMPLE_INSTRUCTION}\n\n{RESPONSE_MARKER}\n{EXAMPLE_RESPONSE}\n\n")
    for role, content in messages:
        if role == "user":
            parts.append(f"{STOP_MARKER}\n{content}\n\n{RESPONSE_MARKER}\n")
        elif role == "assistant":
            parts.append(f"{content}\n\n")
    return "".join(parts)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def model_identity(model: str) -> str:
    """The cache's model name: the path or id plus its weights' hash when `model_ref.json` has one,
    so replacing the weights in a directory does not serve stale completions."""
    ref = Path(model) / "model_ref.json"
    if ref.is_file():
        sha = json.loads(ref.read_text(encoding="utf-8")).get("sha256")
        if sha:
            return f"{model}#{sha[:16]}"
    return model


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future[Completion]


class HFProvider:
    """`llm.provider: transformers`: one model loaded once per process."""

    name = "transformers"

    def __init__(self, model: str, *, batch_size: int = 8, device: str | None = None) -> None:
        import torch

        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # Inference only, so bf16 storage loses nothing that matters; on CPU it also spares bf16
        # autocast re-casting every fp32 weight at each decoding step (Gemma-3-270m, batch 4:
        # 33 s vs 72 s for 16 tokens here). A GPU loads the checkpoint's own dtype.
        self._lm, self._tok = _load(model, "bfloat16" if self.device == "cpu" else "auto")
        self._lm.to(self.device).eval()
        self.has_chat_template = bool(getattr(self._tok, "chat_template", None))
        self.model = model_identity(model) + ("" if self.has_chat_template else f"|{PLAIN_FORMAT}")
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self._gen_lock = threading.Lock()
        self.batches: list[int] = []  # sizes of the generate() calls made, for tests and stats

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> "HFProvider":
        return cls(cfg.model, batch_size=cfg.concurrency)

    def build_prompt(self, request: ChatRequest) -> str:
        if self.has_chat_template:
            return self._tok.apply_chat_template(
                [{"role": r, "content": c} for r, c in request.messages],
                tokenize=False, add_generation_prompt=True)
        return plain_prompt(request.messages)

    async def complete(self, request: ChatRequest) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            waited = 0.0
            while len(self._queue) < self.batch_size and waited < COLLECT_WINDOW_S:
                await asyncio.sleep(0.001)  # let requests released by the last batch join this one
                waited += 0.001
            batch = self._take_batch()
            try:
                results = await asyncio.to_thread(self._generate, [p.request for p in batch])
            except Exception as exc:  # a failed batch fails its requests, not the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)

    def _take_batch(self) -> list[_Pending]:
        """Up to batch_size queued requests sharing the first one's sampling settings."""
        first = self._queue[0].request
        settings = (first.temperature, first.top_p, first.max_tokens)
        batch, rest = [], []
        for p in self._queue:
            same = (p.request.temperature, p.request.top_p, p.request.max_tokens) == settings
            (batch if same and len(batch) < self.batch_size else rest).append(p)
        self._queue = rest
        return batch

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch
        from transformers import StoppingCriteriaList

        self.batches.append(len(requests))
        prompts = [self.build_prompt(r) for r in requests]
        first = requests[0]
        enc = self._tok(prompts, return_tensors="pt", padding=True,
                        add_special_tokens=not self.has_chat_template).to(self.device)
        stops = () if self.has_chat_template else (STOP_MARKER, RESPONSE_MARKER)
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "pad_token_id": self._tok.pad_token_id}
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.temperature > 0:
            from transformers import LogitsProcessorList

            from evolcoder.hf.sampling import CandidateSampler

            kwargs["logits_processor"] = LogitsProcessorList(
                [CandidateSampler(first.temperature, first.top_p, seed=_batch_seed(requests))])
        if stops:
            stop = _stop_on_text(self._tok, enc["input_ids"].shape[1], stops)
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        seed = _batch_seed(requests)
        autocast = torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                  enabled=self.device == "cpu" or torch.cuda.is_bf16_supported())
        with self._gen_lock, torch.inference_mode(), autocast:
            torch.manual_seed(seed)
            out = self._lm.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        eos = _as_set(self._lm.generation_config.eos_token_id) | _as_set(self._tok.eos_token_id)
        results = []
        for row, mask in zip(out, enc["attention_mask"]):
            new = row[width:].tolist()
            while new and new[-1] == self._tok.pad_token_id and new[-1] not in eos:
                new.pop()  # rows that stopped early are padded to the batch's length
            n_new = next((i + 1 for i, t in enumerate(new) if t in eos), len(new))
            text, stopped = cut_at_stop(self._tok.decode(new[:n_new], skip_special_tokens=True), stops)
            finished = stopped or (n_new > 0 and new[n_new - 1] in eos)
            results.append(Completion(text=text.strip(), prompt_tokens=int(mask.sum()),
                                      completion_tokens=n_new, finish_reason="stop" if finished else "length"))
        return results


def _stop_on_text(tokenizer: Any, prompt_len: int, stops: tuple[str, ...], tail: int = 16) -> Any:
    """A per-row StoppingCriteria: stop a row once its generated text contains a stop string.

    transformers' own `stop_strings` rebuilds a table over the whole vocabulary on every
    `generate()` call (Gemma's 262k tokens: 74 s vs 56 s without it for a 4x16-token batch
    on the loaded 2-core dev machine); decoding the last few tokens per step is negligible.
    """
    import torch
    from transformers import StoppingCriteria

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            start = max(prompt_len, input_ids.shape[1] - tail)
            tails = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in tails], dtype=torch.bool,
                                device=input_ids.device)

    return StopOnText()


def _as_set(value: Any) -> set[int]:
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple, set)) else {int(value)}


def _batch_seed(requests: list[ChatRequest]) -> int:
    digest = hashlib.sha256()
    for r in requests:
        digest.update(str(r.seed).encode())
        digest.update(json.dumps(r.messages).encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big") % (2**63)


def _load(model: str, dtype: str) -> tuple[Any, Any]:
    """Through `evolcoder.hf.models` (follows model_ref.json, pad token guaranteed, left padding)."""
    try:
        from evolcoder.hf.models import load_causal_lm
    except ImportError:  # the models module is optional for this provider
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model, padding_side="left")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype), tok
    lm, tok = load_causal_lm(model, dtype=dtype, padding_side="left")
    return lm, tok
