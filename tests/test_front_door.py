"""What a newcomer meets first: `dvc status` clean after an unchanged run, `dvc repro --dry`
on a fresh clone (with the evolcoder.dvcfix guard), `auto` precision under an ISA cap.
Real DVC in a temporary git repo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dvcproject import REPO, default_params, make_project, out, ran, sh


def _seed_file(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} plus n."}) + "\n"
                            for i in range(n)))
    return path


@pytest.mark.slow
def test_unchanged_repro_runs_nothing_and_status_is_clean(tmp_path: Path) -> None:
    params = default_params()
    params["seed"]["path"] = str(_seed_file(tmp_path / "seed.jsonl", 4))
    project = make_project(tmp_path, params)

    assert ran(sh(project, "dvc", "repro", "seed", "plan")) == {"seed", "plan"}
    assert ran(sh(project, "dvc", "repro", "seed", "plan")) == set()
    status = out(sh(project, "dvc", "status", "seed", "plan"))
    assert "up to date" in status and "always changed" not in status

    _seed_file(tmp_path / "seed.jsonl", 5)  # the seed data changed: DVC sees it through the file dep
    assert ran(sh(project, "dvc", "repro", "seed", "plan")) == {"seed"}
    assert json.loads((project / "metrics/seed.json").read_text())["written"] == 5


@pytest.mark.slow
def test_dry_repro_on_a_fresh_clone_lists_every_stage(tmp_path: Path) -> None:
    project = make_project(tmp_path, default_params())
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    dry = sh(clone, "dvc", "repro", "--dry")
    stages = ran(dry)
    rounds = {f"round@{r}" for r in range(1, 11)}
    assert rounds <= stages, out(dry)
    assert {"seed", "plan", "evolver", "merge", "base_model", "finetune", "eval@base", "eval@finetuned", "eval@dev"} <= stages
    assert not (clone / "data/plan").exists(), "--dry ran nothing"


def test_dvcfix_adds_the_existence_guard_once(tmp_path: Path) -> None:
    """The patch adds the existence guard to DVC 3.67.1's line, is idempotent, and leaves other code alone."""
    from evolcoder.dvcfix import BUGGY, FIXED, apply, cache_module

    installed = cache_module().read_text(encoding="utf-8")
    assert "dep.exists and dep.get_hash()" in installed, "run `python -m evolcoder.dvcfix` (make install does)"
    # DVC's own file as released: the guarded line (and the comment the patch put above it) back to 3.67.1's
    lines = installed.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "dep.exists and dep.get_hash()" in line)
    released = lines[:at - 1] + [lines[at].replace("dep.exists and dep.get_hash()", "dep.get_hash()")] + lines[at + 1:]
    unfixed = tmp_path / "cache.py"
    unfixed.write_text("".join(released))
    assert BUGGY in unfixed.read_text()
    assert "patched" in apply(unfixed)
    assert unfixed.read_text().count(FIXED) == 1 and BUGGY not in unfixed.read_text()
    assert "nothing to do" in apply(unfixed)
    other = tmp_path / "other.py"
    other.write_text("def _can_hash(stage):\n    return False\n")
    assert "left untouched" in apply(other) and other.read_text() == "def _can_hash(stage):\n    return False\n"


def test_isa_cap_from_the_environment() -> None:
    from evolcoder.hf.precision import isa_cap

    assert isa_cap({}) is None
    assert isa_cap({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) is None
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16", "MKL_ENABLE_INSTRUCTIONS": "AVX512"}) is None
    assert isa_cap({"ATEN_CPU_CAPABILITY": "avx2"}) == "ATEN_CPU_CAPABILITY=avx2"
    assert isa_cap({"ATEN_CPU_CAPABILITY": "default"}) == "ATEN_CPU_CAPABILITY=default"
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) == "ONEDNN_MAX_CPU_ISA=AVX512_CORE"
    assert isa_cap({"DNNL_MAX_CPU_ISA": "AVX2"}) == "DNNL_MAX_CPU_ISA=AVX2"
    assert isa_cap({"MKL_ENABLE_INSTRUCTIONS": "AVX2"}) == "MKL_ENABLE_INSTRUCTIONS=AVX2"


def test_auto_precision_resolves_to_fp32_under_the_avx2_cap() -> None:
    """The issue's command line: on any CPU, `auto` under the AVX2 caps is fp32 for generation and training."""
    import os
    import subprocess
    import sys

    code = ("from evolcoder.hf.precision import resolve_dtype, trainer_precision;"
            "print(resolve_dtype('auto', 'cpu'), trainer_precision('auto', 'cpu'))")
    caps = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    capped = subprocess.run([sys.executable, "-c", code], env={**os.environ, **caps},
                            capture_output=True, text=True, check=True)
    assert capped.stdout.split() == ["float32", "fp32"]
    free = {k: v for k, v in os.environ.items() if k not in caps and k != "DNNL_MAX_CPU_ISA"}
    native = subprocess.run([sys.executable, "-c", code], env=free, capture_output=True, text=True, check=True)
    from evolcoder.hf.precision import cpu_has_native_bf16

    assert native.stdout.split() == (["bfloat16", "bf16"] if cpu_has_native_bf16() else ["float32", "fp32"])



def test_ci_smoke_runs_every_benchmark() -> None:
    """CI runs `make bench-smoke`, a glob over benchmarks/bench_*.py, and every bench has `--smoke`."""
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make bench-smoke$", ci, re.M)
    makefile = (REPO / "Makefile").read_text()
    target = makefile[makefile.index("\nbench-smoke:"):]
    assert "for b in benchmarks/bench_*.py" in target and "python $$b --smoke" in target
    benches = sorted((REPO / "benchmarks").glob("bench_*.py"))
    assert len(benches) >= 9
    missing = [b.name for b in benches if '"--smoke"' not in b.read_text()]
    assert not missing, f"no --smoke flag: {missing}"
