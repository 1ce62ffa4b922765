"""Prepacked fp32 linears decode what ATen's do, and only fp32 CPU models are converted."""

from __future__ import annotations

from pathlib import Path

import torch

from evolcoder.hf.generation import Generator, Prompt, Sampling
from evolcoder.hf.models import load_causal_lm
from evolcoder.hf.prepack import PrepackedLinear, prepack_linears

PROMPTS = ["def add(a, b):\n", "def fib(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", "import os\n"]


def test_prepacked_layers_match_aten_logits_and_greedy_tokens(tiny_model_dir: Path) -> None:
    packed = Generator(str(tiny_model_dir), dtype="float32")
    plain = Generator(str(tiny_model_dir), dtype="float32", prepack=False)
    linears = sum(type(m) is torch.nn.Linear for m in plain.lm.modules())
    assert packed.prepacked == linears > 0 and plain.prepacked == 0
    assert not any(type(m) is torch.nn.Linear for m in packed.lm.modules())

    enc = plain.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        want, got = plain.lm(**enc).logits, packed.lm(**enc).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    sampling = Sampling(max_new_tokens=24)
    texts = [[o.text for o in outs] for outs in packed.generate_batch([Prompt(p) for p in PROMPTS], sampling)]
    assert texts == [[o.text for o in outs] for outs in plain.generate_batch([Prompt(p) for p in PROMPTS], sampling)]


def test_a_layer_keeps_bias_and_leading_dimensions() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 5)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(PrepackedLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)


def test_bf16_models_stay_as_loaded(tiny_model_dir: Path) -> None:
    lm, _ = load_causal_lm(str(tiny_model_dir), dtype="bfloat16")
    assert prepack_linears(lm) == 0
    assert any(type(m) is torch.nn.Linear for m in lm.modules())


def test_a_layer_onednn_cannot_run_stays_as_it_was() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 0))  # oneDNN refuses 0 outputs
    assert prepack_linears(model) == 1
    assert type(model[0]) is PrepackedLinear and type(model[1]) is torch.nn.Linear
    assert model(torch.randn(3, 8)).shape == (3, 0)
