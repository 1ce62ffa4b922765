"""Every stage depends on exactly the code it runs: DVC must never call stale data up to date.

The import closure of each stage script (src/evolcoder/dvcdeps.py: through
`stages/_common.py` and every `evolcoder` import, lazy ones inside functions included) is
walked with `ast`, and every library file in it must be covered by one of the stage's
`deps` (the file itself or a folder above it). `evolcoder dvc-deps --write` writes the deps
from that closure and `--check` must pass, so nothing a stage does not run schedules it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from evolcoder import dvcdeps
from evolcoder.dvcdeps import imports_of

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    return dvcdeps.module_file(SRC, name)


def closure(script: Path) -> set[Path]:
    return dvcdeps.closure(REPO, script)


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, `foreach` groups by their template."""
    data = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    return {name: stage.get("do", stage) for name, stage in data["stages"].items()}


def uncovered(stage: dict) -> list[str]:
    """Library files the stage's script runs that none of its deps covers."""
    script = re.search(r"python (stages/\S+\.py)", stage["cmd"])
    assert script, f"stage cmd names no stage script: {stage['cmd']}"
    deps = [REPO / d for d in stage.get("deps", []) if "${" not in d]
    missing = []
    for path in sorted(closure(REPO / script.group(1))):
        if not any(path == dep or dep in path.parents for dep in deps):
            missing.append(str(path.relative_to(REPO)))
    return missing


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_the_code_it_runs(name: str) -> None:
    missing = uncovered(stages()[name])
    assert not missing, f"dvc.yaml stage {name!r} runs code it does not depend on: {', '.join(missing)}"


def test_the_check_fails_when_a_dep_is_removed() -> None:
    stage = dict(stages()["round"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/evolcoder/llm"]
    missing = uncovered(stage)
    assert "src/evolcoder/llm/client.py" in missing and "src/evolcoder/llm/cache.py" in missing


@pytest.mark.parametrize("name", ["eval", "finetune", "base_model"])
def test_evolution_never_schedules_training_or_evaluation(name: str) -> None:
    deps = stages()[name].get("deps", [])
    assert not [d for d in deps if d.startswith("src/evolcoder/evolution")], deps


def test_no_import_reaches_upward() -> None:
    """util (leaf helpers) imports nothing; ground floor imports no wing; llm/hf import no pipeline
    wing; eval/train stay apart."""
    floors = {"util": -1, "ground": 0, "hf": 1, "llm": 2, "evolution": 3, "dataset": 3, "train": 3, "eval": 3,
              "experiments": 4, "report": 4, "cli": 5}
    allowed_sideways = {("evolution", "eval.sandbox"), ("dataset", "eval.problems")}

    def wing(path: Path) -> str:
        rel = path.relative_to(SRC / "evolcoder")
        return rel.parts[0] if len(rel.parts) > 1 else {"report.py": "report", "cli.py": "cli"}.get(
            rel.name, "ground")

    for path in (SRC / "evolcoder").rglob("*.py"):
        here = wing(path)
        for name in imports_of(path):
            target = module_file(name)
            if target is None or target == path:
                continue
            there = wing(target)
            if there == here or floors[there] < floors[here]:
                continue
            sub = ".".join(target.relative_to(SRC / "evolcoder").with_suffix("").parts[:2])
            assert (here, sub) in allowed_sideways or (here, sub.rsplit(".", 1)[0]) in allowed_sideways, \
                f"{path.relative_to(REPO)} ({here}) imports {name} ({there})"


def test_dvc_yaml_deps_are_the_generated_ones() -> None:
    assert dvcdeps.check(REPO) == []


def test_generated_deps_survive_a_rewrite_and_catch_a_removed_dep(tmp_path: Path) -> None:
    """--write of a current file changes no byte; a dep removed by hand makes --check fail."""
    for name in ("src", "stages"):
        (tmp_path / name).symlink_to(REPO / name)
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text(text)
    assert dvcdeps.write(tmp_path) == [] and (tmp_path / "dvc.yaml").read_text() == text
    (tmp_path / "dvc.yaml").write_text(text.replace(" src/evolcoder/contracts.py,", "", 1))
    assert any("missing ['src/evolcoder/contracts.py']" in p for p in dvcdeps.check(tmp_path))
    assert dvcdeps.write(tmp_path) and (tmp_path / "dvc.yaml").read_text() == text


def test_eval_stages_come_from_one_foreach_and_base_follows_its_own_mode() -> None:
    """eval@base depends on generate.base_mode (not the fine-tuned model's generate.mode), and
    no eval stage depends on transport keys (concurrency, timeouts, early_stop)."""
    group = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["eval"]
    modes = {key: item["mode"] for key, item in group["foreach"].items()}
    assert modes == {"base": "base_mode", "finetuned": "mode", "dev": "mode"}
    params = group["do"]["params"]
    assert "generate.${item.mode}" in params and "generate" not in params
    assert not {"generate.concurrency", "generate.timeout_s", "generate.early_stop"} & set(params)
