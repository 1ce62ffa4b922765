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

from evolcoder.eval.evolstop import MetricRef, paired, parse_exp_show


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


def arms_section(doc: Any) -> list[str]:
    """The paper's arms side by side from `dvc exp show --json`: the newest experiment of each
    arm, and each arm minus the original, paired over the same dev and test tasks."""
    out = ["## Arms: complexity vs quantity (`dvc exp show`)"]
    dev_rows = parse_exp_show(doc)
    test_rows = {r.rev: r for r in parse_exp_show(doc, dev=MetricRef("metrics/eval.json"))}
    newest: dict[str, Any] = {}
    for row in dev_rows:
        arm = _arm(row)
        if arm and (row.dev is not None or row.test is not None):
            if arm not in newest or (row.timestamp or "") > (newest[arm].timestamp or ""):
                newest[arm] = row
    if not newest:
        return out + ["", "_no experiment with eval metrics: `dvc exp run -S evol.rounds=0`, "
                      "`-S merge.match=samples`, `-S merge.match=tokens`_"]
    base = newest.get("original (evol.rounds=0)")

    def diff(a: Any, b: Any) -> str:
        c = paired(a, b) if a is not None and b is not None else None
        return "" if c is None else f"{c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}] ({c.n_tasks} tasks)"

    rows = [[arm, r.name, r.rounds, r.dev if r.dev is not None else "", r.test if r.test is not None else "",
             diff(r, base) if r is not base else "", diff(test_rows.get(r.rev), test_rows.get(base.rev) if base else None)
             if r is not base else ""] for arm, r in sorted(newest.items())]
    return out + [""] + _table(["arm", "experiment", "rounds", "dev pass@1", "test pass@1",
                                "dev minus original (95 % CI)", "test minus original (95 % CI)"], rows) + [
        "", "Differences are paired over the tasks both arms were scored on, with a seeded bootstrap interval."]
