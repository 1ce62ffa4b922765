"""What decides a score besides the samples' code: one provenance block per metrics file.

Why one block: the metrics used to carry the same facts twice (`decoding` and the verdict
fields, with different spellings: `prompt` vs `prompt_style`, versions computed twice), so a
reader could not tell which to trust. `verdict_provenance` is now the only writer, computed
once per evaluation, and the report reads its fields. The library versions are computed
once per process (`library_versions` is cached): they go into the run fingerprint of every
benchmark as well.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from evolcoder.config import GenerateConfig
from evolcoder.contracts import TRAIN_CONFIG
from evolcoder.errors import ConfigError
from evolcoder.util.hashing import json_sha256, manifest
from evolcoder.util.hubid import path_shaped

SMALL_FILE_BYTES = 1 << 22  # hashed whole: configs and tokenizers; weights are known by size and record


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of what shifts generated text (transformers, torch, vllm) and of evolcoder."""
    from importlib.metadata import PackageNotFoundError, version

    import evolcoder

    versions = {"evolcoder": evolcoder.__version__}
    for package in ("transformers", "torch", "vllm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def verdict_provenance(cfg: GenerateConfig, mode: str, backend: Any, timeout_s: float) -> dict[str, Any]:
    """Everything that decides the samples and their verdicts besides the model, for the
    `provenance` block of every metrics file: prompt mode and style, decoding settings,
    backend with its resolved dtype (`auto` depends on the machine) and batch layout, the
    library versions that shift greedy outputs, and the time-limit policy."""
    from evolcoder.eval.execute import INPUT_FLOOR_S, TIME_FACTOR

    style = cfg.prompt_style
    policy = (f"per task: max(eval.timeout_s (+ a compile allowance for compiled languages), "
              f"{TIME_FACTOR:g} x the canonical solution's time measured in the sandbox on this machine); "
              f"per EvalPlus input: max({INPUT_FLOOR_S:g} s, {TIME_FACTOR:g} x that input's "
              "canonical time), capped at the task's limit")
    return {"mode": mode, "prompt_style": style if mode == "instruct" and style else mode,
            "n": cfg.n, "greedy": cfg.temperature == 0.0, "temperature": cfg.temperature,
            "top_p": cfg.top_p if cfg.temperature > 0 else None, "max_new_tokens": cfg.max_new_tokens,
            "seed": cfg.seed, "extra_stops": list(cfg.stop), "backend": backend.name,
            "dtype": getattr(backend, "dtype", None) or cfg.dtype,
            "batch_size": cfg.batch_size if backend.name == "hf" else None,
            "concurrency": cfg.concurrency if backend.name == "openai" else None,
            "versions": library_versions(), "time_limit": {"timeout_s": timeout_s, "policy": policy}}


def check_model(model: str, backend: str, *, local: bool = False) -> str:
    """Fail fast, naming the model, when a local model path is not usable.

    Anything that exists on disk must be a model directory (config.json or model_ref.json);
    something path-shaped that does not exist is an error rather than a hub id to try.
    `local`: the model must be a directory (a DVC stage's model is always a dependency).
    """
    from evolcoder.hf.models import REF_FILE

    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / REF_FILE).is_file()):
            raise ConfigError(f"model {model}: not a model directory (no config.json or {REF_FILE})")
        return model
    if backend == "openai":
        return model  # a name at the endpoint
    if local or path_shaped(model):
        raise ConfigError(f"model {model}: directory not found")
    if model.count("/") == 1 and Path(model.split("/")[0]).is_dir():
        raise ConfigError(f"model {model}: directory not found (and {model.split('/')[0]}/ exists, so this "
                          "is not a hub id)")
    return model


def model_provenance(model: str) -> dict[str, Any]:
    """Where the weights came from: the materialised reference and/or fine-tuning record."""
    from evolcoder.hf.models import read_ref

    info: dict[str, Any] = {"path": model}
    ref = read_ref(model)
    if ref is not None:
        info["ref"] = ref
    file = Path(model) / TRAIN_CONFIG
    if file.is_file():
        data = json.loads(file.read_text(encoding="utf-8"))
        info["finetune"] = ({k: data.get(k) for k in ("base_model", "train_data_sha256")} |
                            {"run_id": (data.get("metrics") or {}).get("run_id")})
    return info


def model_fingerprint(model: str) -> str:
    """The model's identity plus a hash over its directory: every file's name and size, and
    the contents of the small ones (config, tokenizer, the fine-tune record with its run id
    over config, data and base). Content only, no mtimes: a `dvc checkout` of the same
    model is the same model, and the completion cache still answers for it."""
    from evolcoder.hf.models import model_identity

    path = Path(model)
    if not path.is_dir():
        return model
    return f"{model_identity(model)}@{json_sha256(manifest(path, SMALL_FILE_BYTES))[:16]}"
