"""A throwaway copy of this project's pipeline in a temporary git + DVC repo, for tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def sh(cwd: Path, *cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    """Stages DVC executed (not skipped or restored from its run cache)."""
    return set(re.findall(r"Running stage '([^']+)'", out(proc)))


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def set_llm(params: dict, **values: object) -> dict:
    """Put `llm`-ish settings where they live: identity keys in `evolver`, the rest in `llm`."""
    from evolcoder.config import EvolverConfig

    for key, value in values.items():
        params["evolver" if key in EvolverConfig.model_fields else "llm"][key] = value
    return params


def make_project(tmp: Path, params: dict) -> Path:
    """Copy code, stages and dvc.yaml; write `params`; git init + dvc init + first commit."""
    project = tmp / "project"
    project.mkdir()
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / ".gitignore").write_text(".evolcoder/\n")
    sh(project, "git", "init", "-q")
    sh(project, "dvc", "init", "-q")
    sh(project, "dvc", "config", "core.analytics", "false")
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "init")
    return project
