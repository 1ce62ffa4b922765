"""Scoring judged samples: the unbiased pass@k, its 95 % intervals, the execution report.

Why apart from judging (`evolcoder.eval.execute`): these are pure functions of the verdicts,
with no sandbox and no dataset, so they are read and tested on their own, and a reader of a
metrics file finds here exactly how each number in it was computed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al., 2021), computed stably."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass
class ExecutionReport:
    results: list[dict]
    pass_at_k: dict[str, float]
    per_task: dict[str, dict]
    provenance: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    sandbox: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errata: list[dict] = field(default_factory=list)

    @property
    def ci95(self) -> dict[str, list[float]]:
        return intervals(self.per_task, self.pass_at_k)

    def base(self) -> dict | None:
        """EvalPlus base-test scores from the same run (HumanEval / MBPP next to their `+`),
        or None for benchmarks without a base/plus split."""
        if not self.results or "base_passed" not in self.results[0]:
            return None
        ks = tuple(int(k.split("@")[1]) for k in self.pass_at_k)
        per_task, overall = tally(self.results, ks, "base_passed")
        return {**{k: round(v, 6) for k, v in overall.items()}, "ci95": intervals(per_task, overall)}

    def scores(self) -> dict:
        """pass@k with 95 % intervals, the base-test scores and the errata: what a stage reports."""
        out: dict[str, Any] = {**{k: round(v, 6) for k, v in self.pass_at_k.items()}, "ci95": self.ci95}
        base = self.base()
        if base is not None:
            out["base"] = base
        out["errata"] = self.errata
        return out

    def to_metrics(self) -> dict:
        """Summary for metrics files: scores, coverage, dataset provenance, containment used."""
        ns = [t["n"] for t in self.per_task.values()]
        return {
            "benchmark": self.provenance,
            **self.scores(),
            "n_samples": len(self.results),
            "tasks_covered": len(self.per_task),
            "tasks_total": self.provenance.get("n_tasks"),
            "samples_per_task": {"min": min(ns, default=0), "max": max(ns, default=0)},
            "results": dict(Counter(r["result"].split(":")[0] for r in self.results)),
            "wall_time_s": round(self.wall_time_s, 3),
            "sandbox": self.sandbox,
            "warnings": self.warnings,
        }


def tally(results: list[dict], ks: tuple[int, ...],
            key: str = "passed") -> tuple[dict[str, dict], dict[str, float]]:
    """Per-task and overall pass@k of the verdict `key` (`passed`, or `base_passed`)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in results:
        counts[row["task_id"]][0] += 1
        counts[row["task_id"]][1] += bool(row.get(key))
    per_task = {}
    for task_id, (n, c) in counts.items():
        per_task[task_id] = {"n": n, "correct": c,
                             **{f"pass@{k}": pass_at_k(n, c, k) for k in ks if k <= n}}
    overall = {}
    smallest = min((t["n"] for t in per_task.values()), default=0)
    for k in ks:
        if 1 <= k <= smallest:
            overall[f"pass@{k}"] = sum(t[f"pass@{k}"] for t in per_task.values()) / len(per_task)
    return per_task, overall


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: list[float], *, resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean, resampling tasks with replacement (seeded)."""
    import random

    if not values:
        return 0.0, 1.0
    rng, n = random.Random(seed), len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return lo, hi


def intervals(per_task: dict[str, dict], overall: dict[str, float]) -> dict[str, list[float]]:
    """A 95 % interval for every overall pass@k: Wilson when every task has one sample (pass@1
    is then a binomial proportion over tasks), else a seeded bootstrap over tasks."""
    out = {}
    for name in overall:
        if all(t["n"] == 1 for t in per_task.values()):
            lo, hi = wilson(sum(t["correct"] for t in per_task.values()), len(per_task))
        else:
            lo, hi = bootstrap_mean([t[name] for t in per_task.values()])
        out[name] = [round(lo, 6), round(hi, 6)]
    return out
