"""Evol-stop: choose how many evolution rounds to keep from a `dvc exp` sweep.

The paper stops evolving when the external dev set stops improving. Here each round
count is one DVC experiment (`dvc exp run --queue -S 'evol.rounds=range(1,6)'`); this
module reads `dvc exp show --json`, ranks the experiments by dev pass@1 (ties go to fewer
rounds: cheaper data, same score), and the test score is shown for information only,
never used to choose — choosing on the test set would leak it into the model selection.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.errors import DataError

_KIND_RANK = {"experiment": 2, "baseline": 1, "workspace": 0}


@dataclass(frozen=True)
class ExpRow:
    name: str
    rev: str
    kind: str  # experiment | baseline | workspace
    rounds: int | None
    dev: float | None
    test: float | None
    timestamp: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class MetricRef:
    """`file` + dotted `key` inside it; key None = the only/first benchmark's pass@1."""

    file: str
    key: str | None = None

    @classmethod
    def parse(cls, text: str) -> "MetricRef":
        file, _, key = text.partition(":")
        return cls(file, key or None)

    def read(self, metrics: dict[str, Any]) -> float | None:
        data = (metrics.get(self.file) or {}).get("data")
        if not isinstance(data, dict):
            return None
        if self.key is None:
            for value in data.values():
                if isinstance(value, dict) and isinstance(value.get("pass@1"), (int, float)):
                    return float(value["pass@1"])
            return None
        node: Any = data
        for part in self.key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def run_exp_show(cwd: str | Path | None = None) -> Any:
    """`dvc exp show --json` of the current repository, parsed."""
    proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"dvc exp show --json: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return _loads(proc.stdout, "dvc exp show --json")


def load_exp_json(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}:1: cannot read ({exc.strerror})") from None
    return _loads(text, str(path))


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _nodes(doc: Any) -> list[tuple[str, dict]]:
    """(kind, node) for the workspace, each baseline commit and each experiment under it."""
    if not isinstance(doc, list):
        raise DataError("dvc exp show --json: expected a JSON list of revisions (DVC 3 format)")
    found = []
    for entry in doc:
        if not isinstance(entry, dict):
            continue
        found.append(("workspace" if entry.get("rev") == "workspace" else "baseline", entry))
        for group in entry.get("experiments") or []:
            for node in (group or {}).get("revs") or []:
                found.append(("experiment", node))
    return found


def parse_exp_show(doc: Any, *, dev: MetricRef = MetricRef("metrics/dev.json"),
                   test: MetricRef = MetricRef("metrics/eval.json"), rounds_param: str = "evol.rounds",
                   params_file: str = "params.yaml") -> list[ExpRow]:
    """Rows of the sweep; experiments without results (queued, failed) are skipped."""
    rows = []
    for kind, node in _nodes(doc):
        data = node.get("data") or {}
        params = _flatten(((data.get("params") or {}).get(params_file) or {}).get("data") or {})
        rounds = params.get(rounds_param)
        metrics = data.get("metrics") or {}
        rows.append(ExpRow(name=node.get("name") or str(node.get("rev", ""))[:7], rev=str(node.get("rev", "")),
                           kind=kind, rounds=rounds if isinstance(rounds, int) else None,
                           dev=dev.read(metrics), test=test.read(metrics), timestamp=data.get("timestamp"),
                           params=params))
    return rows


def candidates(rows: list[ExpRow]) -> list[ExpRow]:
    """One row per round count: experiments before the baseline commit, newest first.

    The workspace is left out: its metrics may belong to uncommitted, half-run changes.
    """
    best: dict[int, ExpRow] = {}
    for row in rows:
        if row.kind == "workspace" or row.rounds is None or row.dev is None:
            continue
        old = best.get(row.rounds)
        if old is None or (_KIND_RANK[row.kind], row.timestamp or "") > (_KIND_RANK[old.kind], old.timestamp or ""):
            best[row.rounds] = row
    return [best[r] for r in sorted(best)]


def choose(rows: list[ExpRow]) -> ExpRow:
    """Best dev score; ties go to fewer rounds."""
    pool = candidates(rows)
    if not pool:
        raise DataError("dvc exp show: no experiment has both evol.rounds and a dev pass@1 "
                        "(run `dvc exp run --run-all` first, or check --dev-metric)")
    return max(pool, key=lambda r: (r.dev, -(r.rounds or 0)))


def other_differences(rows: list[ExpRow], rounds_param: str = "evol.rounds") -> list[str]:
    """Params besides the round count that differ between the compared experiments."""
    keys: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.params.items():
            keys.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return sorted(k for k, v in keys.items() if k != rounds_param and len(v) > 1)


def table(rows: list[ExpRow], best: ExpRow) -> str:
    lines = [f"{'rounds':>6}  {'dev pass@1':>10}  {'test pass@1':>11}  experiment"]
    for row in rows:
        test = "" if row.test is None else f"{row.test:.4f}"
        mark = "  <- best" if row is best else ""
        lines.append(f"{row.rounds:>6}  {row.dev:>10.4f}  {test:>11}  {row.name}{mark}")
    return "\n".join(lines)


def plot_records(rows: list[ExpRow]) -> list[dict[str, Any]]:
    """Rows for `dvc plots` (x: rounds, y: dev_pass@1)."""
    return [{"rounds": r.rounds, "dev_pass@1": r.dev, "test_pass@1": r.test, "experiment": r.name}
            for r in rows]


def apply(row: ExpRow, cwd: str | Path | None = None) -> str:
    """`dvc exp apply` the chosen experiment; a baseline commit needs nothing applied."""
    if row.kind != "experiment":
        return f"{row.name} is the baseline commit itself; nothing to apply"
    proc = subprocess.run(["dvc", "exp", "apply", row.name], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"dvc exp apply {row.name}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return f"applied {row.name} (evol.rounds={row.rounds}) to the workspace"
