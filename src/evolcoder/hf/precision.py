"""Which floating-point format a model runs in: what the hardware does natively.

bf16 is only fast where the silicon has it: on a CPU without AVX512-BF16 or AMX every bf16
matmul is emulated (4x slower than fp32 for Gemma-3-270m on an AVX2-only EPYC), on a GPU
without bf16 units fp16 is the fast half format. `auto` therefore resolves per machine,
and the resolved name is recorded wherever a model's output is, because numerics decide
greedy and sampled texts alike.

An ISA cap set for the process (`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`,
`MKL_ENABLE_INSTRUCTIONS=AVX2`) is honoured too: under it torch and oneDNN run no bf16
instructions, so bf16 would be emulated exactly as on an AVX2-only laptop, and a developer
with a newer CPU can reproduce that laptop's run (and its fp32 choice) on their own machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")
# Trainer spells them differently.
_PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """AVX512-BF16 or AMX: torch's own probe, else the kernel's CPU flags."""
    if cpuinfo is None:
        import torch

        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported",
                                                              "_is_amx_tile_supported")]
        if all(callable(p) for p in probes):
            return any(p() for p in probes)
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


# Caps under which the library still has native bf16 kernels; any other value caps below them.
_ATEN_BF16 = {"avx512"}
_ONEDNN_BF16_PREFIXES = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")
_MKL_AVX512_PREFIXES = ("AVX512", "AVX10")  # MKL's own bf16 tiers vary by version: cap only below AVX-512


def isa_cap(env: Mapping[str, str] | None = None) -> str | None:
    """The environment variable that caps this process below native bf16, as `NAME=value`, or None.

    ATen reads ATEN_CPU_CAPABILITY (default/avx2/avx512), oneDNN ONEDNN_MAX_CPU_ISA (or the
    older DNNL_MAX_CPU_ISA), MKL MKL_ENABLE_INSTRUCTIONS; any of them below the bf16 ISAs
    makes bf16 matmuls run emulated.
    """
    env = os.environ if env is None else env
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten and aten not in _ATEN_BF16:
        return f"ATEN_CPU_CAPABILITY={aten}"
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        onednn = env.get(name, "").strip().upper()
        if onednn and not onednn.startswith(_ONEDNN_BF16_PREFIXES):
            return f"{name}={onednn}"
    mkl = env.get("MKL_ENABLE_INSTRUCTIONS", "").strip().upper()
    if mkl and not mkl.startswith(_MKL_AVX512_PREFIXES):
        return f"MKL_ENABLE_INSTRUCTIONS={mkl}"
    return None


def resolve_dtype(dtype: str, device: str | None = None) -> str:
    """`auto` -> bfloat16 where native, else float32 on CPU and float16 on a GPU; others as given."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} (known: auto, {', '.join(DTYPES)})")
        return dtype
    device = device or default_device()
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu":
        return "bfloat16" if cpu_has_native_bf16() and isa_cap() is None else "float32"
    return "float32"  # mps, xpu, ...: the safe format; a user can force another


def trainer_precision(precision: str, device: str | None = None) -> str:
    """finetune.precision (`auto`, bf16, fp16, fp32) -> the one Trainer runs with."""
    if precision != "auto":
        return precision
    return _PRECISION[resolve_dtype("auto", device)]
