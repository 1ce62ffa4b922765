"""Evol-stop: choose how many evolution rounds to keep from a `dvc exp` sweep.

The paper stops evolving when the external dev set stops improving. Here each round
count is one DVC experiment (`dvc exp run --queue -S 'evol.rounds=range(1,6)'`); this
module reads `dvc exp show --json`, ranks the experiments by dev pass@1 (ties go to fewer
rounds: cheaper data, same score), and the test score is shown for information only,
never used to choose — choosing on the test set would leak it into the model selection.

A dev set of a few dozen tasks cannot tell one problem's difference from noise, so when the
dev metrics carry per-task scores the best candidate is compared with each one of fewer
rounds, paired over tasks with a seeded bootstrap interval; if the interval of the
difference includes 0, the fewest such rounds are kept.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.contracts import EVAL_METRICS
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
    per_task: dict[str, float] | None = field(default=None, compare=False, repr=False)


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
            entry = self._entry(data)
            return None if entry is None else float(entry["pass@1"])
        node: Any = data
        for part in self.key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None

    def _entry(self, data: dict) -> dict | None:
        if self.key is not None:
            node: Any = data
            for part in self.key.split(".")[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            return node if isinstance(node, dict) else None
        return next((v for v in data.values() if isinstance(v, dict)
                     and isinstance(v.get("pass@1"), (int, float))), None)

    def read_per_task(self, metrics: dict[str, Any]) -> dict[str, float] | None:
        """{task_id: pass@1} from the benchmark entry the score comes from (the eval stages
        write `task_ids` and `per_task_pass@1`), or None when the file has none."""
        data = (metrics.get(self.file) or {}).get("data")
        entry = self._entry(data) if isinstance(data, dict) else None
        ids, values = (entry or {}).get("task_ids"), (entry or {}).get("per_task_pass@1")
        if not isinstance(ids, list) or not isinstance(values, list) or len(ids) != len(values):
            return None
        return {str(i): float(v) for i, v in zip(ids, values)}


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


def parse_exp_show(doc: Any, *, dev: MetricRef = MetricRef(EVAL_METRICS["dev"]),
                   test: MetricRef = MetricRef(EVAL_METRICS["eval"]), rounds_param: str = "evol.rounds",
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
                           params=params, per_task=dev.read_per_task(metrics)))
    return rows


def candidates(rows: list[ExpRow]) -> list[ExpRow]:
    """One row per round count: experiments before the baseline commit, newest first.

    The workspace is left out: its metrics may belong to uncommitted, half-run changes, and so
    are the `merge.match` control arms (an evolved subsample is not "N rounds of evolution";
    `evolcoder report` sets them beside the original data instead).
    """
    best: dict[int, ExpRow] = {}
    for row in rows:
        if row.kind == "workspace" or row.rounds is None or row.dev is None or row.params.get("merge.match"):
            continue
        old = best.get(row.rounds)
        if old is None or (_KIND_RANK[row.kind], row.timestamp or "") > (_KIND_RANK[old.kind], old.timestamp or ""):
            best[row.rounds] = row
    return [best[r] for r in sorted(best)]


@dataclass(frozen=True)
class Comparison:
    """Paired dev difference `top - other` over the tasks both were scored on."""

    other: ExpRow
    diff: float
    low: float
    high: float
    n_tasks: int

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class Decision:
    chosen: ExpRow
    top: ExpRow
    comparisons: list[Comparison]
    note: str


def paired(top: ExpRow, other: ExpRow, seed: int = 0) -> Comparison | None:
    """Bootstrap (seeded, over tasks) 95 % interval of the mean per-task difference."""
    from evolcoder.eval.execute import bootstrap_mean

    if top.per_task is None or other.per_task is None:
        return None
    common = sorted(set(top.per_task) & set(other.per_task))
    if not common:
        return None
    diffs = [top.per_task[t] - other.per_task[t] for t in common]
    low, high = bootstrap_mean(diffs, seed=seed)
    return Comparison(other, sum(diffs) / len(diffs), low, high, len(common))


def decide(rows: list[ExpRow], seed: int = 0) -> Decision:
    """Best dev score (ties to fewer rounds); then the fewest rounds whose paired difference
    to it has an interval that includes 0, since the dev set cannot tell them apart."""
    pool = candidates(rows)
    if not pool:
        raise DataError("dvc exp show: no experiment has both evol.rounds and a dev pass@1 "
                        "(run `dvc exp run --run-all` first, or check --dev-metric)")
    top = max(pool, key=lambda r: (r.dev, -(r.rounds or 0)))
    fewer = [r for r in pool if (r.rounds or 0) < (top.rounds or 0)]
    comparisons = [c for r in fewer if (c := paired(top, r, seed)) is not None]
    if fewer and len(comparisons) < len(fewer):
        return Decision(top, top, comparisons, "no per-task dev scores for every candidate: chosen by the "
                        "point estimate alone, with no interval")
    tied = [c for c in comparisons if c.includes_zero]
    if not tied:
        why = "each fewer-round candidate is worse, outside the interval" if fewer else "it has the fewest rounds"
        return Decision(top, top, comparisons, f"best dev score; {why}")
    keep = min(tied, key=lambda c: c.other.rounds or 0)
    return Decision(keep.other, top, comparisons,
                    f"{top.rounds} rounds score best, but the 95 % interval of the paired difference to "
                    f"{keep.other.rounds} rounds includes 0, so the fewer rounds are kept")


def choose(rows: list[ExpRow]) -> ExpRow:
    """The chosen candidate (see `decide`)."""
    return decide(rows).chosen


def explain(decision: Decision) -> str:
    """The paired differences and the reason for the choice, for the CLI and the report."""
    lines = [f"dev pass@1, {decision.top.rounds} rounds minus {c.other.rounds}: {c.diff:+.4f} "
             f"[{c.low:+.4f}, {c.high:+.4f}] over {c.n_tasks} tasks" for c in decision.comparisons]
    return "\n".join(lines + [f"chosen: {decision.chosen.rounds} rounds ({decision.note})"])


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


def plot_records(rows: list[ExpRow], decision: Decision | None = None) -> list[dict[str, Any]]:
    """Rows for `dvc plots` (x: rounds, y: dev_pass@1), with the paired difference to the best
    candidate and its interval, and which one was chosen and why."""
    diffs = {id(c.other): c for c in decision.comparisons} if decision else {}
    out = []
    for r in rows:
        record: dict[str, Any] = {"rounds": r.rounds, "dev_pass@1": r.dev, "test_pass@1": r.test,
                                  "experiment": r.name}
        if decision is not None:
            c = diffs.get(id(r))
            record.update(best_minus_this=None if c is None else round(c.diff, 6),
                          ci95=None if c is None else [round(c.low, 6), round(c.high, 6)],
                          chosen=r is decision.chosen)
            if r is decision.chosen:
                record["why"] = decision.note
        out.append(record)
    return out


def apply(row: ExpRow, cwd: str | Path | None = None) -> str:
    """`dvc exp apply` the chosen experiment; a baseline commit needs nothing applied."""
    if row.kind != "experiment":
        return f"{row.name} is the baseline commit itself; nothing to apply"
    proc = subprocess.run(["dvc", "exp", "apply", row.name], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"dvc exp apply {row.name}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return f"applied {row.name} (evol.rounds={row.rounds}) to the workspace"
