"""The fast candidate sampler draws from the same distribution as temperature + top-p."""

from __future__ import annotations

import torch

from evolcoder.hf.sampling import CandidateSampler


def _draw(sampler: CandidateSampler, logits: torch.Tensor, n: int) -> torch.Tensor:
    rows = logits.expand(n, -1).clone()
    return sampler(None, rows).argmax(-1)


def test_frequencies_match_softmax_with_temperature() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    draws = _draw(CandidateSampler(0.8, 1.0, seed=3), logits, 40000)
    expected = torch.softmax(logits[0] / 0.8, -1)
    observed = torch.bincount(draws, minlength=5).float() / draws.numel()
    assert torch.allclose(observed, expected, atol=0.01)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = _draw(CandidateSampler(1.0, 0.7, seed=1), logits, 20000)
    observed = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert observed[2] == 0 and observed[3] == 0  # 0.5 + 0.3 >= 0.7: two candidates remain
    assert abs(observed[0].item() - 0.5 / 0.8) < 0.02


def test_same_seed_same_tokens_and_masking_leaves_one_choice() -> None:
    logits = torch.randn(8, 1000)
    a = CandidateSampler(0.7, 0.95, seed=5)(None, logits.clone())
    b = CandidateSampler(0.7, 0.95, seed=5)(None, logits.clone())
    assert torch.equal(a, b)
    assert ((a == 0).sum(-1) == 1).all() and torch.isinf(a).sum() == 8 * 999
