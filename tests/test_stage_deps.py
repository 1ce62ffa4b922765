"""Every stage depends on exactly the code it runs: DVC must never call stale data up to date.

The import closure of each stage script (through `stages/_common.py` and every
`evolcoder` import, lazy ones inside functions included) is walked with `ast`, and every
library file in it must be covered by one of the stage's `deps` (the file itself or a
folder above it). The other direction is checked where it matters most: nothing that
only evolution runs may schedule the base model's evaluation.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    """The source file of an `evolcoder` module or package, or None for anything else."""
    if name != "evolcoder" and not name.startswith("evolcoder."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` anywhere in the file may load at run time."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute `evolcoder.` imports")
    if any(n == "_common" for n in names):
        names.add("stages._common")
    return names


def closure(script: Path) -> set[Path]:
    """The script, `_common.py` when it uses it, and every library file it reaches."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            if name == "stages._common":
                todo.append(REPO / "stages" / "_common.py")
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a module's packages run their __init__ too
                found = module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


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


@pytest.mark.parametrize("name", ["eval_base", "eval", "dev", "finetune", "base_model"])
def test_evolution_never_schedules_training_or_evaluation(name: str) -> None:
    deps = stages()[name].get("deps", [])
    assert not [d for d in deps if d.startswith("src/evolcoder/evolution")], deps


def test_no_import_reaches_upward() -> None:
    """util (leaf helpers) imports nothing; ground floor imports no wing; llm/hf import no pipeline
    wing; eval/train stay apart."""
    floors = {"util": -1, "ground": 0, "hf": 1, "llm": 2, "evolution": 3, "dataset": 3, "train": 3, "eval": 3,
              "report": 4, "cli": 5}
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
