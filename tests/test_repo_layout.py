"""The committed repository must let a fresh clone run `dvc repro` as it stands.

DVC refuses to write a cached output that git already tracks (`output 'data/plan' is
already tracked by SCM`), and stops the whole pipeline there. A stale `.gitignore` left
inside a directory that later became a directory output did exactly that to the README's
first command, while every test in temporary repositories passed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tracked(path: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def test_no_cached_output_is_tracked_by_git() -> None:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        outs = [(stage.addressing, out.def_path) for stage in repo.index.stages
                for out in stage.outs if out.use_cache]
    assert outs, "dvc.yaml declares no cached outputs"
    clashes = {f"{stage}: {path}": _tracked(path) for stage, path in outs if _tracked(path)}
    assert not clashes, f"git tracks files inside DVC-cached outputs (a fresh `dvc repro` fails): {clashes}"
