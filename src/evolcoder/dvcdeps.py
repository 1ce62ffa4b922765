"""dvc.yaml's code deps, computed: each stage depends on exactly the code its script runs.

A stage whose deps miss a file it imports lets DVC call stale data up to date; a stage
that lists code it never runs re-runs for nothing. The import closure of each stage
script (through `stages/_common.py` and every `evolcoder` import, lazy ones inside
functions included) is walked with `ast`; package data beside a module (the evolution
templates) goes with it, and a folder whose every file is needed is listed as the folder.
`evolcoder dvc-deps --check` fails when dvc.yaml differs from that; `--write` rewrites only
the code entries of each stage's deps (data deps, comments and everything else stay).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from evolcoder.errors import ConfigError

SCRIPT = re.compile(r"python (stages/\S+\.py)")


def module_file(src: Path, name: str) -> Path | None:
    """The source file of an `evolcoder` module or package, or None for anything else."""
    if name != "evolcoder" and not name.startswith("evolcoder."):
        return None
    base = src.joinpath(*name.split("."))
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
            raise ConfigError(f"{path}: relative import; use absolute `evolcoder.` imports")
    if "_common" in names:
        names.add("stages._common")
    return names


def closure(repo: Path, script: Path) -> set[Path]:
    """The script, `_common.py` when it uses it, and every library file it reaches."""
    src, seen, todo = repo / "src", set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            if name == "stages._common":
                todo.append(repo / "stages" / "_common.py")
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a module's packages run their __init__ too
                found = module_file(src, ".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def code_deps(repo: Path, script: str) -> list[str]:
    """The script's closure plus its packages' data files, whole folders folded into one entry."""
    needed = closure(repo, repo / script)
    for path in list(needed):  # package data (templates.yaml) is read beside its module
        if len(path.relative_to(repo).parts) > 3:
            needed |= {p for p in path.parent.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")}
    out: list[Path] = []
    for path in sorted(needed):
        folded = next((d for d in reversed(path.relative_to(repo).parents)
                       if len(d.parts) > 2 and _files(repo / d) <= needed), None)
        entry = repo / folded if folded is not None else path
        if entry not in out:
            out.append(entry)
    rel = [str(p.relative_to(repo)) for p in out]
    return [script] + [r for r in rel if r != script]


def is_code(entry: str) -> bool:
    """A deps entry the generator owns: stage scripts and the library with its package data
    (data under src/evolcoder/resources is listed by hand, as a stage's input)."""
    return entry.startswith("stages/") or (entry.startswith("src/evolcoder")
                                           and not entry.startswith("src/evolcoder/resources"))


def stage_bodies(dvc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages, `foreach` groups by their template."""
    return {name: stage.get("do", stage) for name, stage in dvc["stages"].items()}


def expected(repo: Path, stage: dict[str, Any]) -> list[str]:
    """The stage's deps as they should be: computed code entries first, then its other deps."""
    found = SCRIPT.search(stage["cmd"])
    if not found:
        raise ConfigError(f"dvc.yaml: stage cmd names no stage script: {stage['cmd']}")
    return code_deps(repo, found.group(1)) + [d for d in stage.get("deps", []) if not is_code(d)]


def check(repo: Path) -> list[str]:
    """One line per stage whose deps differ from the computed ones (empty: dvc.yaml is current)."""
    import yaml

    problems = []
    for name, stage in stage_bodies(yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))).items():
        have, want = stage.get("deps", []), expected(repo, stage)
        if have != want:
            extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
            problems.append(f"dvc.yaml: stage {name}: deps differ from the import closure "
                            f"(missing {missing or '-'}, not needed {extra or '-'}, or out of order)")
    return problems


def render(indent: str, entries: list[str], width: int = 110) -> list[str]:
    """`deps: [a, b, ...]` wrapped at `width`; entries holding `${...}` are quoted (braces are YAML syntax)."""
    items = [f'"{e}"' if "${" in e else e for e in entries]
    lines, line = [], f"{indent}deps: ["
    pad = " " * len(line)
    for i, item in enumerate(items):
        piece = item + ("]" if i == len(items) - 1 else ",")
        if not line.endswith("[") and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = pad + piece
        else:
            line += ("" if line.endswith("[") else " ") + piece
    return lines + [line]


def _deps_blocks(lines: list[str]) -> list[tuple[int, int, str]]:
    """(first line, end line, indent) of every `deps:` entry, block or flow style, in file order."""
    blocks = []
    for i, text in enumerate(lines):
        found = re.match(r"^(\s*)deps:(.*)$", text)
        if not found:
            continue
        indent, end = found.group(1), i + 1
        if "[" in found.group(2):
            while "]" not in lines[end - 1]:
                end += 1
        else:
            while end < len(lines) and re.match(rf"^{indent}\s+(- |#)", lines[end]):
                end += 1
        blocks.append((i, end, indent))
    return blocks


def write(repo: Path) -> list[str]:
    """Rewrite every stage's deps as computed (flow style, data deps after the code); returns
    the stages whose deps changed. Only the `deps:` entries are touched."""
    import yaml

    from evolcoder.jsonio import atomic_open

    path = repo / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    stages = stage_bodies(yaml.safe_load(text))
    lines = text.splitlines()
    blocks = _deps_blocks(lines)
    if len(blocks) != len(stages):
        raise ConfigError(f"{path}: found {len(blocks)} `deps:` entries for {len(stages)} stages")
    changed = [name for name, stage in stages.items() if stage.get("deps", []) != expected(repo, stage)]
    for (start, end, indent), stage in reversed(list(zip(blocks, stages.values()))):
        lines[start:end] = render(indent, expected(repo, stage))
    with atomic_open(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return changed
