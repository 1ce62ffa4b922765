"""The real `dvc repro` / `dvc exp run` in a temporary git repo: which round stages run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fakeserver import subprocess_server

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_project(tmp: Path, params: dict) -> Path:
    """A copy of this project's pipeline (code, stages, dvc.yaml) with the given params."""
    project = tmp / "project"
    project.mkdir()
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / ".gitignore").write_text(".evolcoder/\n")
    _sh(project, "git", "init", "-q")
    _sh(project, "dvc", "init", "-q")
    _sh(project, "dvc", "config", "core.analytics", "false")
    _sh(project, "git", "add", "-A")
    _sh(project, "git", "commit", "-qm", "init")
    return project


def test_rounds_rerun_only_what_changed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} squared plus n.",
                                        "output": f"def f(n):\n    return {i} ** 2 + n"}) + "\n"
                            for i in range(6)))
    with subprocess_server() as base_url:
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["seed"]["path"] = str(seed)
        params["evol"]["rounds"] = 3
        params["llm"].update({"provider": "openai", "model": "fake", "base_url": base_url, "concurrency": 4})
        params["merge"]["decontaminate"] = ["humaneval"]
        project = make_project(tmp_path, params)

        first = _sh(project, "dvc", "repro", "merge")
        assert {"seed", "plan", "evolver", "round@1", "round@2", "round@3", "merge"} <= ran(first)
        train = [json.loads(line) for line in (project / "data/train/train.jsonl").read_text().splitlines()]
        assert sorted({r["round"] for r in train}) == [0, 1, 2, 3]
        evol = json.loads((project / "metrics/evol.json").read_text())
        assert evol["rounds"] == 3 and evol["per_round"]["r3"]["kept"] == 6

        again = _sh(project, "dvc", "repro", "merge")
        assert ran(again) == set()
        _sh(project, "git", "add", "-A")
        _sh(project, "git", "commit", "-qm", "three rounds")

        four = _sh(project, "dvc", "exp", "run", "-S", "evol.rounds=4", "merge")
        assert {"plan", "round@4", "merge"} <= ran(four)
        assert not ran(four) & {"seed", "evolver", "round@1", "round@2", "round@3"}

        reseed = _sh(project, "dvc", "exp", "run", "-S", "+evol.per_round.r3.seed=7", "merge")
        assert {"plan", "round@3", "merge"} <= ran(reseed)
        assert not ran(reseed) & {"seed", "evolver", "round@1", "round@2"}

        too_many = subprocess.run(["dvc", "exp", "run", "-S", "evol.rounds=9", "merge"], cwd=project,
                                  capture_output=True, text=True, timeout=300)
        assert too_many.returncode != 0
        assert "evol.rounds: is 9 but dvc.yaml declares only 8" in too_many.stdout + too_many.stderr
