"""The `eval`/`eval_base`/`dev` stage script run as DVC runs it: a subprocess with paths.

Checks the metrics document (pass@k per benchmark, flat, plus provenance), the samples
and results written beside it, and that bad params or a bad model path stop the stage
with a clear message before any model is loaded, leaving no output behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "stages" / "eval.py"


def _params(tmp_path: Path, **sections) -> Path:
    data = {"generate": {"max_new_tokens": 16, "batch_size": 4, "dtype": "float32", "mode": "instruct"},
            "eval": {"benchmarks": ["humaneval", "mbpp"], "limit": 2, "ks": [1]},
            "dev": {"benchmarks": ["dev"], "limit": 2}, "sandbox": {"workers": 2}}
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _stage(tmp_path: Path, params: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(STAGE), "--params", str(params), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)


def test_eval_base_and_dev_stages(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = _params(tmp_path)
    proc = _stage(tmp_path, params, "--section", "eval", "--role", "base", "--model", str(tiny_model_dir),
                  "--base-model", str(tiny_model_dir), "--out-dir", "eval/base",
                  "--metrics", "metrics/eval_base.json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "eval_base.json").read_text())
    for name in ("humaneval", "mbpp"):
        assert set(metrics[name]) == {"pass@1", "ci95", "errata", "n_tasks", "n_per_task", "task_ids",
                                      "per_task_pass@1"}
        assert 0.0 <= metrics[name]["pass@1"] <= 1.0
        low, high = metrics[name]["ci95"]["pass@1"]
        assert 0.0 <= low <= metrics[name]["pass@1"] <= high <= 1.0 and high - low > 0.3  # 2 tasks: wide
        assert len(metrics[name]["task_ids"]) == len(metrics[name]["per_task_pass@1"]) == 2
        assert metrics[name]["n_tasks"] == 2 and metrics[name]["n_per_task"] == 1
        samples = [json.loads(line) for line in (tmp_path / "eval" / "base" / f"{name}.samples.jsonl").open()]
        results = [json.loads(line) for line in (tmp_path / "eval" / "base" / f"{name}.results.jsonl").open()]
        assert len(samples) == len(results) == 2
        assert all(s["mode"] == "completion" and "raw" in s and "completion" in s for s in samples)
    prov = metrics["provenance"]
    assert prov["role"] == "base" and prov["base_model"] == str(tiny_model_dir)
    assert prov["model"]["path"] == str(tiny_model_dir)
    assert prov["greedy"] is True and prov["max_new_tokens"] == 16 and "decoding" not in prov
    assert prov["mode"] == "completion" and prov["dtype"] == "float32" and prov["prompt_style"] == "completion"
    assert "generate (float32)" in proc.stderr and "tok/s" in proc.stderr, "generation progress on stderr"
    assert "sample/s" in proc.stderr, "execution progress on stderr"
    assert prov["datasets"]["humaneval"]["sha256"] and prov["datasets"]["mbpp"]["n_tasks_total"] == 500
    assert prov["datasets"]["humaneval"]["limit"] == 2 and prov["wall_s"] > 0
    assert [r["task_id"] for r in results] == ["Mbpp/11", "Mbpp/12"]  # the test split starts at 11

    proc = _stage(tmp_path, params, "--section", "dev", "--model", str(tiny_model_dir),
                  "--out-dir", "eval/dev", "--metrics", "metrics/dev.json")
    assert proc.returncode == 0, proc.stderr
    dev = json.loads((tmp_path / "metrics" / "dev.json").read_text())
    assert set(dev) == {"dev", "provenance"}
    assert dev["provenance"]["mode"] == "instruct"
    assert dev["provenance"]["datasets"]["dev"]["name"] == "dev"
    samples = [json.loads(line) for line in (tmp_path / "eval" / "dev" / "dev.samples.jsonl").open()]
    assert all(s["mode"] == "instruct" for s in samples)
    assert not list(tmp_path.glob("eval/.*partial"))


def test_plus_benchmark_reports_base_and_plus_from_one_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = _params(tmp_path, eval={"benchmarks": ["humaneval+"], "limit": 2})
    proc = _stage(tmp_path, params, "--section", "eval", "--model", str(tiny_model_dir),
                  "--out-dir", "eval/ft", "--metrics", "metrics/eval.json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    plus, base = metrics["humaneval+"], metrics["humaneval+/base"]
    assert base["pass@1"] >= plus["pass@1"] and base["n_tasks"] == plus["n_tasks"] == 2
    assert set(base["ci95"]) == {"pass@1"} and plus["errata"] == []
    results = [json.loads(line) for line in (tmp_path / "eval" / "ft" / "humaneval+.results.jsonl").open()]
    assert len(results) == 2 and all(isinstance(r["base_passed"], bool) for r in results)


def test_bad_benchmark_fails_before_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = _params(tmp_path, eval={"benchmarks": ["humaneval", "humaneval-x"]})
    proc = _stage(tmp_path, params, "--section", "eval", "--model", str(tiny_model_dir),
                  "--out-dir", "eval/ft", "--metrics", "metrics/eval.json")
    assert proc.returncode == 2
    assert "error: params: eval.benchmarks[1]: unknown benchmark 'humaneval-x'" in proc.stderr
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "eval").exists()


def test_bad_model_path_fails_before_work(tmp_path: Path) -> None:
    params = _params(tmp_path)
    proc = _stage(tmp_path, params, "--section", "eval", "--model", "models/finetuned",
                  "--out-dir", "eval/ft", "--metrics", "metrics/eval.json")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: model models/finetuned: directory not found"
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "eval").exists()


def test_bad_decoding_param_names_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = _params(tmp_path, generate={"temprature": 0.2})
    proc = _stage(tmp_path, params, "--section", "dev", "--model", str(tiny_model_dir),
                  "--out-dir", "eval/dev", "--metrics", "metrics/dev.json")
    assert proc.returncode == 2
    assert "error: params: generate.temprature: unknown key" in proc.stderr
    assert not (tmp_path / "metrics").exists()


def test_paper_preset_is_valid_params() -> None:
    """The paper preset is checked like params.yaml: every section, every key, every type."""
    from evolcoder.config import SECTIONS, build, load_yaml

    preset = load_yaml(REPO / "configs" / "presets" / "paper.yaml")
    built = {name: build(SECTIONS[name], values, name) for name, values in preset.items()}
    assert built["generate"].temperature == 0.0 and built["generate"].n == 1
    assert built["eval"].benchmarks == ["humaneval", "mbpp"] and built["evol"].rounds == 3
    assert built["base_model"].source == "bigcode/starcoder"
