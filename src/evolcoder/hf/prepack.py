"""fp32 decoding on a CPU: linear layers whose weights are reordered for oneDNN once, at load.

A decode step multiplies a few rows (one token per live sequence) by every weight matrix.
ATen's fp32 `linear` hands that to a GEMM that packs the weight into its blocked layout on
every call, so each step reads and writes each weight twice over; Gemma 3's 262k-token
output layer alone is 0.67 GB in fp32. oneDNN can keep the weight in its own layout, so a
step only reads it. Measured on the dev EPYC capped to AVX2 (benchmarks/bench_step_cost.py,
gemma-3-270m): a decode step of 1 / 4 / 16 / 32 rows went from 94 / 178 / 203 / 283 ms to
61 / 104 / 141 / 206 ms, with the same greedy tokens. bf16 gains nothing (its kernels don't
pack per call), so only fp32 models on the CPU are converted.

Only inference uses this: the converted layers hold no trainable parameters.
"""

from __future__ import annotations

from typing import Any

import torch


class PrepackedLinear(torch.nn.Module):
    """`nn.Linear` for inference with its weight (and bias) kept in oneDNN's blocked layout."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.weight = linear.weight.detach().to_mkldnn()
            self.bias = None if linear.bias is None else linear.bias.detach().to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to_mkldnn()
        out = torch.ops.aten.mkldnn_linear(flat, self.weight, self.bias).to_dense()
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN prepacked"


def applies(model: Any) -> bool:
    """fp32 weights on the CPU, and a torch built with oneDNN."""
    param = next(model.parameters(), None)
    return (param is not None and param.device.type == "cpu" and param.dtype == torch.float32
            and torch.backends.mkldnn.is_available())


def prepack_linears(model: torch.nn.Module) -> int:
    """Replace every `nn.Linear` of an fp32 CPU model by a `PrepackedLinear`; returns how many.

    A model this doesn't apply to (bf16, a GPU, a torch without oneDNN) is left as it is, and
    so is any layer oneDNN cannot run or gets wrong on a probe row.
    """
    if not applies(model):
        return 0
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if type(child) is torch.nn.Linear]
    converted = 0
    for parent, name, child in targets:
        packed = _checked(child)
        if packed is not None:
            setattr(parent, name, packed)
            converted += 1
    return converted


def _checked(linear: torch.nn.Linear) -> PrepackedLinear | None:
    """The prepacked layer if oneDNN runs it and agrees with ATen on a probe row, else None.

    oneDNN's kernels differ by build and CPU (aarch64, old x86), and some shapes it refuses
    outright; such a layer stays as it was rather than failing generation.
    """
    probe = torch.randn(1, linear.in_features, generator=torch.Generator().manual_seed(0))
    try:
        packed = PrepackedLinear(linear)
        with torch.inference_mode():
            agrees = torch.allclose(packed(probe), linear(probe), rtol=1e-3, atol=1e-3)
    except RuntimeError:
        return None
    return packed if agrees else None
