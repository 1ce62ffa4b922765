"""The one batched Hugging Face generation loop, for the evolver and for eval generation.

Both callers hand over prompt texts and get texts back; what differs is only what ends a
row early: the evolver's plain prompt stops at the next `### Instruction:` marker (stop
strings, cut from the text), eval stops once more tokens cannot change the scored code
(a `final` test, text kept whole). Everything else is shared here: loading in the dtype
the hardware runs natively, left padding, longest-first batching (similar lengths share a
batch and an out-of-memory shows up at once), the fast candidate sampler, the EOS set,
and a progress bar with tokens/s and an ETA on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evolcoder.util.stops import cut_at_stops

STOP_TAIL_TOKENS = 16  # stop strings are searched in the last few decoded tokens only


@dataclass(frozen=True)
class Prompt:
    """One input: stop strings end the row and are cut off; `final(text)` ends it, text kept."""

    text: str
    stops: tuple[str, ...] = ()
    final: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    n: int = 1


@dataclass(frozen=True)
class Output:
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (EOS or stop string), "early" (final test), "length"
    prompt_tokens: int = 0


cut_at_stop = cut_at_stops  # the name the providers and their tests import


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The generation config's EOS ids (Gemma has two) and the tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = eos if isinstance(eos, (list, tuple, set)) else [eos]
    return {int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None}


class Generator:
    """A causal LM loaded once, in `dtype` (`auto`: what the device does natively).

    fp32 on a CPU gets its linear layers prepacked for oneDNN (`evolcoder.hf.prepack`): a
    decode step then costs about two thirds of ATen's. `prepack=False` keeps them as loaded.
    """

    def __init__(self, model: str, *, dtype: str = "auto", device: str | None = None,
                 add_special_tokens: bool = True, prepack: bool = True) -> None:
        from evolcoder.hf.models import load_causal_lm
        from evolcoder.hf.precision import default_device, resolve_dtype
        from evolcoder.hf.prepack import prepack_linears

        self.device = device or default_device()
        self.dtype = resolve_dtype(dtype, self.device)
        self.lm, self.tokenizer = load_causal_lm(model, dtype=self.dtype, device=self.device,
                                                 padding_side="left")
        self.lm.eval()
        self.prepacked = prepack_linears(self.lm) if prepack else 0
        self.add_special_tokens = add_special_tokens
        self.eos = eos_ids(self.lm, self.tokenizer)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, *, batch_size: int,
                 progress: bool = False, desc: str = "generate", done: Callable[[int], bool] | None = None,
                 on_batch: Callable[[list[tuple[int, list[Output]]]], None] | None = None) -> list[list[Output]]:
        """`sampling.n` outputs per prompt, in prompt order, in batches of `batch_size` prompts.

        Resuming: a batch whose prompts are all `done` (finished by an earlier, killed run) is
        skipped and its slots stay empty, for the caller to fill. The batches are the same
        whatever is done, so a resumed run generates what an uninterrupted one would have
        (numerics depend on the batch composition). `on_batch` gets each finished batch.
        """
        from tqdm import tqdm

        lengths = [len(ids) for ids in self.tokenizer([p.text for p in prompts],
                                                      add_special_tokens=self.add_special_tokens)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        todo = [b for b in batches if done is None or not all(done(i) for i in b)]
        results: list[list[Output]] = [[] for _ in prompts]
        bar = tqdm(total=len(prompts), initial=len(prompts) - sum(map(len, todo)), desc=desc, unit="task",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True)
        started, tokens = time.perf_counter(), 0
        try:
            for batch in todo:
                finished = list(zip(batch, self.generate_batch([prompts[i] for i in batch], sampling)))
                for i, outs in finished:
                    results[i] = outs
                    tokens += sum(o.n_tokens for o in outs)
                if on_batch is not None:
                    on_batch(finished)
                bar.update(len(batch))
                bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9):.1f} tok/s")
        finally:
            bar.close()
        return results

    def generate_batch(self, prompts: Sequence[Prompt], sampling: Sampling,
                       seed: int | None = None) -> list[list[Output]]:
        """One left-padded `generate()` call; `seed` overrides `sampling.seed` for this batch."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from evolcoder.hf.sampling import CandidateSampler

        seed = sampling.seed if seed is None else seed
        tok = self.tokenizer
        enc = tok([p.text for p in prompts], return_tensors="pt", padding=True,
                  add_special_tokens=self.add_special_tokens).to(self.device)
        if sampling.n > 1:
            enc = {key: value.repeat_interleave(sampling.n, dim=0) for key, value in enc.items()}
        width = enc["input_ids"].shape[1]
        rows = [p for p in prompts for _ in range(sampling.n)]
        kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, do_sample=False, temperature=None,
                                      top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        if sampling.temperature > 0:
            kwargs["logits_processor"] = LogitsProcessorList(
                [CandidateSampler(sampling.temperature, sampling.top_p, seed=seed)])
        stop = RowStop(tok, rows, width) if any(p.stops or p.final for p in rows) else None
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        with torch.inference_mode():
            torch.manual_seed(seed)
            out = self.lm.generate(**enc, **kwargs)
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        outs = [self._output(ids, rows[r], stop.stopped_at[r] if stop else None, int(prompt_tokens[r]))
                for r, ids in enumerate(out[:, width:].tolist())]
        return [outs[i * sampling.n:(i + 1) * sampling.n] for i in range(len(prompts))]

    def _output(self, ids: list[int], prompt: Prompt, stopped_at: tuple[int, str] | None,
                prompt_tokens: int) -> Output:
        n_tokens, reason = len(ids), "length"
        if stopped_at is not None:
            n_tokens, reason = stopped_at
        else:
            n_tokens, reason = next(((j + 1, "stop") for j, t in enumerate(ids) if t in self.eos),
                                    (n_tokens, reason))
        text = self.tokenizer.decode(ids[:n_tokens], skip_special_tokens=True)
        if prompt.stops:
            text, cut = cut_at_stop(text, prompt.stops)
            reason = "stop" if cut else reason
        return Output(text, n_tokens, reason, prompt_tokens)


def _stopping_criteria_base() -> type:
    from transformers import StoppingCriteria

    return StoppingCriteria


class RowStop(_stopping_criteria_base()):  # type: ignore[misc]
    """Per-row stop: a stop string in the row's last tokens, or its `final` test passing.

    transformers' own `stop_strings` rebuilds a table over the whole vocabulary on every
    `generate()` call (Gemma's 262k tokens: seconds per call on a CPU); decoding a few
    tokens per row and step costs next to nothing. Rows that stopped keep being fed pad
    tokens by `generate()` (and keep drawing from the seeded sampler), so stopping early
    never changes what the other rows generate.
    """

    def __init__(self, tokenizer: Any, prompts: Sequence[Prompt], width: int,
                 tail: int = STOP_TAIL_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.width = width
        self.tail = tail
        self.stopped_at: list[tuple[int, str] | None] = [None] * len(self.prompts)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        steps = input_ids.shape[1] - self.width
        for row, prompt in enumerate(self.prompts):
            if self.stopped_at[row] is not None or steps <= 0:
                continue
            if prompt.stops:
                start = max(self.width, input_ids.shape[1] - self.tail)
                text = self.tokenizer.decode(input_ids[row, start:], skip_special_tokens=True)
                if any(s in text for s in prompt.stops):
                    self.stopped_at[row] = (steps, "stop")
                    continue
            if prompt.final is not None:
                text = self.tokenizer.decode(input_ids[row, self.width:], skip_special_tokens=True)
                if prompt.final(text):
                    self.stopped_at[row] = (steps, "early")
        return torch.tensor([s is not None for s in self.stopped_at], dtype=torch.bool,
                            device=input_ids.device)
