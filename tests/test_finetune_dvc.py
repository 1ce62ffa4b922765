"""The base_model + finetune stages under real DVC, with the dvc.yaml entries the pipeline uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.jsonio import write_jsonl

REPO = Path(__file__).resolve().parents[1]

DVC_YAML = """\
stages:
  base_model:
    cmd: python stages/base_model.py --params params.yaml --out models/base --metrics metrics/base_model.json
    deps: [stages/base_model.py]
    params: [base_model]
    outs: [models/base]
    metrics:
      - metrics/base_model.json:
          cache: false
  finetune:
    cmd: >-
      python stages/finetune.py --params params.yaml --train data/train/train.jsonl
      --out models/finetuned --metrics metrics/train.json --live-dir metrics/train
    deps: [stages/finetune.py, data/train/train.jsonl, models/base]
    params: [finetune]
    outs: [models/finetuned]
    metrics:
      - metrics/train.json:
          cache: false
      - metrics/train/metrics.json:
          cache: false
    plots:
      - metrics/train/plots/metrics:
          x: step
          cache: false
"""


def _sh(cmd: list[str], cwd: Path) -> str:
    # dvc runs stage commands with `python` from PATH: make it this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_dvc_repro_trains_plots_and_skips_when_unchanged(tiny_model_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    (repo / "stages").mkdir(parents=True)
    for name in ("_common.py", "base_model.py", "finetune.py"):
        shutil.copy(REPO / "stages" / name, repo / "stages" / name)
    write_jsonl(repo / "data/train/train.jsonl",
                [{"id": f"r{i}", "instruction": f"Print {i}.", "input": "", "output": f"print({i})\n",
                  "round": 0, "method": "seed", "parent_id": None} for i in range(12)])
    (repo / "params.yaml").write_text(
        f"base_model:\n  source: {tiny_model_dir}\n"
        "finetune:\n  base_model: models/base\n  learning_rate: 0.001\n  max_steps: 3\n"
        "  max_length: 64\n  save_steps: 0\n  precision: fp32\n")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    # dvclive (the curves) needs a commit to resolve its baseline; the stage says so up front.
    proc = subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode != 0 and "make a first commit" in proc.stdout + proc.stderr
    assert not (repo / "models/finetuned").exists()
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    _sh(["dvc", "repro"], repo)

    metrics = json.loads((repo / "metrics/train.json").read_text())
    assert metrics["global_step"] == 3
    assert (repo / "models/finetuned/model.safetensors").is_file()
    plots = json.loads(_sh(["dvc", "plots", "show", "--json"], repo))["data"]
    assert any(key.endswith("train/loss.tsv") for key in plots), list(plots)
    assert "global_step" in _sh(["dvc", "metrics", "show"], repo)
    again = _sh(["dvc", "repro"], repo)
    assert "didn't change" in again and "Running stage 'finetune'" not in again
