"""The paper's complexity-vs-quantity arms side by side, from `dvc exp show`.

WizardCoder's claim is that evolved data beats the original at equal size. Each arm is
one DVC experiment (`-S evol.rounds=0`, `-S merge.match=samples`, `-S merge.match=tokens`,
and the plain evolved run); this compares the newest experiment of each with the original
arm, paired over the same tasks (evolstop.paired: a seeded bootstrap over per-task
scores), for `evolcoder report`. Kept out of report.py so the `report` stage, which never
calls DVC, does not depend on the evaluation code.
"""

from __future__ import annotations

from typing import Any

from evolcoder.experiments.evolstop import MetricRef, _nodes, paired, parse_exp_show


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (this wing sits below report.py, so it does not borrow report's)."""
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def _arm(row: Any) -> str | None:
    match = row.params.get("merge.match")
    if row.rounds == 0:
        return "original (evol.rounds=0)"
    if match in ("samples", "tokens"):
        return f"evolved, matched by {match}"
    return "evolved, all" if row.rounds else None


def _training_sets(doc: Any) -> dict[str, tuple[Any, Any]]:
    """rev -> (training records, training tokens) from each experiment's metrics/merge.json."""
    out = {}
    for _, node in _nodes(doc):
        merge = ((((node.get("data") or {}).get("metrics") or {}).get("metrics/merge.json") or {}).get("data")) or {}
        control = merge.get("control") or {}
        out[str(node.get("rev", ""))] = (merge.get("records_out", ""), control.get("train_tokens") or "")
    return out


def arms_section(doc: Any) -> list[str]:
    """The paper's arms side by side from `dvc exp show --json`: the newest experiment of each
    arm (the workspace is not an experiment), its training set, its scores, and each arm minus
    the original, paired over the same dev and test tasks."""
    out = ["## Arms: complexity vs quantity (`dvc exp show`)"]
    test_rows = {r.rev: r for r in parse_exp_show(doc, dev=MetricRef("metrics/eval.json"))}
    sizes = _training_sets(doc)
    newest: dict[str, Any] = {}
    for row in parse_exp_show(doc):
        arm = _arm(row)
        if arm and row.kind != "workspace" and (arm not in newest or (row.timestamp or "") > (newest[arm].timestamp or "")):
            newest[arm] = row
    if not newest:
        return out + ["", "_no arm among the experiments: `dvc exp run -S evol.rounds=0`, "
                      "`-S merge.match=samples`, `-S merge.match=tokens`_"]
    base = newest.get("original (evol.rounds=0)")

    def diff(a: Any, b: Any) -> str:
        c = paired(a, b) if a is not None and b is not None and a is not b else None
        return "" if c is None else f"{c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}] ({c.n_tasks} tasks)"

    rows = [[arm, r.name, r.rounds, *sizes.get(r.rev, ("", "")), "" if r.dev is None else r.dev,
             "" if r.test is None else r.test, diff(r, base),
             diff(test_rows.get(r.rev), test_rows.get(base.rev) if base else None) if r is not base else ""]
            for arm, r in sorted(newest.items())]
    return out + [""] + _table(["arm", "experiment", "rounds", "train records", "train tokens", "dev pass@1",
                                "test pass@1", "dev minus original (95 % CI)", "test minus original (95 % CI)"],
                               rows) + [
        "", "Differences are paired over the tasks both arms were scored on, with a seeded bootstrap interval; "
        "train tokens are counted for the matched arms (merge.json `control`)."]
