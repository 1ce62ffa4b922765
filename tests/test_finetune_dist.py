"""Data-parallel finetune: two real CPU processes (torchrun, gloo) vs one process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evolcoder.jsonio import write_jsonl

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp: Path, name: str, model: Path, train: Path, per_device: int, nproc: int) -> Path:
    params = tmp / f"{name}.yaml"
    params.write_text(
        "finetune:\n"
        f"  base_model: {model}\n  learning_rate: 0.001\n  max_steps: 5\n  warmup_steps: 0\n"
        f"  per_device_batch_size: {per_device}\n  max_length: 128\n  precision: fp32\n"
        f"  save_steps: 0\n  checkpoint_dir: {tmp / name / 'ckpt'}\n  trace_examples: true\n  seed: 7\n"
        "  lora: {enabled: false}\n")  # full fine-tuning: every weight must match across ranks
    stage = [str(REPO / "stages/finetune.py"), "--params", str(params), "--train", str(train),
             "--out", str(tmp / name / "model"), "--metrics", str(tmp / name / "train.json"),
             "--live-dir", str(tmp / name / "live")]
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    proc = subprocess.run(launcher + stage, capture_output=True, text=True, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / name


@pytest.mark.slow
def test_two_processes_see_disjoint_data_and_match_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"id": f"d{i}", "instruction": f"Return {i} plus {i % 5}.", "input": "",
                         "output": f"def f():\n    return {i} + {i % 5}\n", "round": 0, "method": "seed",
                         "parent_id": None} for i in range(40)])
    single = _run(tmp_path, "single", tiny_model_dir, train, per_device=2, nproc=1)
    double = _run(tmp_path, "double", tiny_model_dir, train, per_device=1, nproc=2)

    run_id = json.loads((double / "train.json").read_text())["run_id"]
    ranks = [json.loads((double / "ckpt" / run_id / f"trace-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] and ranks[1] and not set(ranks[0]) & set(ranks[1])
    one_id = json.loads((single / "train.json").read_text())["run_id"]
    one = json.loads((single / "ckpt" / one_id / "trace-rank0.json").read_text())
    assert sorted(ranks[0] + ranks[1]) == sorted(one)  # the same global batches, split in two

    metrics = json.loads((double / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 5
    a = load_file(single / "model" / "model.safetensors")
    b = load_file(double / "model" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    moved = max((a[k] - base[k]).abs().max().item() for k in a)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-3 and diff < 1e-4 * max(1.0, moved), (moved, diff)
