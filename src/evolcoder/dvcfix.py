"""Guard the installed DVC so `dvc repro --dry` works on a fresh clone.

DVC up to 3.67.1 (the newest release at the time of writing) looks a stage up in its run
cache before a dry run and hashes every dependency to do so; on a fresh clone an upstream
stage's output does not exist yet, so `dvc repro --dry` of any chained pipeline fails with
`[Errno 2] No such file or directory` at the first such stage (treeverse/dvc#9818; a
two-stage `cp` pipeline shows it; the issue is open). The guard: hash a dependency only when
it exists (`dep.exists and dep.get_hash()` in `dvc/stage/cache.py:_can_hash`); a missing
input can have no run-cache entry anyway, so nothing else changes. `make install` makes this
one-condition change in the project's virtual environment until a DVC release fixes it;
a DVC that already checks, or whose code differs, is left untouched. Patching an installed
library is a stopgap, kept to this one line and this one DVC release.
"""

from __future__ import annotations

import sys
from pathlib import Path

BUGGY = 'if not (dep.protocol == "local" and dep.def_path and dep.get_hash()):'
FIXED = ('# evolcoder: guard for treeverse/dvc#9818 (dry run, missing upstream outputs)\n'
         '        if not (dep.protocol == "local" and dep.def_path and dep.exists and dep.get_hash()):')


def cache_module() -> Path:
    """The installed `dvc/stage/cache.py` (found without importing DVC's heavy package)."""
    import importlib.util

    spec = importlib.util.find_spec("dvc")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("dvcfix: dvc is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "stage" / "cache.py"


def apply(path: Path) -> str:
    """Patch `path` in place if it has the unfixed line; say what was done."""
    text = path.read_text(encoding="utf-8")
    if "dep.exists and dep.get_hash()" in text:
        return f"dvcfix: {path} already checks that a dependency exists (nothing to do)"
    if text.count(BUGGY) != 1:
        return f"dvcfix: {path} differs from DVC 3.67.1's; left untouched"
    tmp = path.with_suffix(".py.evolcoder-tmp")
    tmp.write_text(text.replace(BUGGY, FIXED), encoding="utf-8")
    tmp.replace(path)
    return f"dvcfix: patched {path} (dvc repro --dry on a fresh clone; treeverse/dvc#9818)"


def main() -> None:
    print(apply(cache_module()))


if __name__ == "__main__":
    sys.exit(main())
