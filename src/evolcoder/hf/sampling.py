"""Fast temperature/top-p sampling for large vocabularies on CPU.

transformers' sampling sorts the whole vocabulary for top-p and draws with
`torch.multinomial` over it; with Gemma 3's 262k-token vocabulary that costs seconds
per decoding step on a CPU, far more than the model itself. Nucleus sampling only ever
keeps a few hundred candidates, so this processor takes the top `candidates` logits,
applies temperature and top-p among them, draws one token with a seeded generator, and
masks every other token so that greedy decoding emits the drawn one. Use it with
`do_sample=False` in `generate()`.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class CandidateSampler(LogitsProcessor):
    """Draws the next token among the top `candidates` logits (temperature, then top-p)."""

    def __init__(self, temperature: float, top_p: float = 1.0, *, candidates: int = 256,
                 seed: int = 0) -> None:
        if temperature <= 0:
            raise ValueError("CandidateSampler needs temperature > 0; use greedy decoding otherwise")
        self.temperature = temperature
        self.top_p = top_p
        self.candidates = candidates
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        k = min(self.candidates, scores.shape[-1])
        values, indices = torch.topk(scores.float(), k, dim=-1)  # sorted, descending
        probs = torch.softmax(values / self.temperature, dim=-1)
        if self.top_p < 1.0:
            before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better candidates
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        choice = torch.multinomial(probs.cpu(), 1, generator=self.generator).to(indices.device)
        token = indices.gather(-1, choice)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, token, 0.0)
