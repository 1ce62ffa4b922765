"""Execution verification of answers in the sandbox: do the solution's tests pass, and do they
notice a broken solution?

Model code runs only through `evolcoder.eval.sandbox` (its public `Sandbox`, `encode` and
`decode`): one `io` job per item, whose entry point is a fixed harness that loads the solution,
runs every test on its own and hands back a plain list of per-test results. So the verdict
names the failing test, and a timeout, a crash or an exit without a verdict is the item's
failure, not the harness'. Each item gets the sandbox's time and memory limits.

A test written from the instruction that calls a name the solution does not define tests a
different interface, not this answer: it is set aside as `unusable`, never counted as a failure.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from evolcoder.eval.sandbox import Limits, RunResult, Sandbox, decode, encode
from evolcoder.evolution.checks import Test, split_answer
from evolcoder.evolution.mutants import mutants
from evolcoder.evolution.plan import Verification

PASSED, FAILED, TIMED_OUT = "passed", "failed", "timed out"
NO_CODE, NO_TESTS, VACUOUS = "no runnable code", "no tests", "tests assert nothing"
ERROR_CHARS = 300
ENTRY = "__evolcoder_verify__"

HARNESS = '''
def __evolcoder_verify__(solution, tests):
    def describe(exc):
        text = str(exc).replace("\\n", " ")[:200]
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    scope = {"__name__": "__solution__"}
    try:
        exec(compile(solution, "solution.py", "exec"), scope)
    except BaseException as exc:
        return ["load", describe(exc), []]
    results = []
    for name, source in tests:
        try:
            exec(compile(source, name, "exec"), dict(scope))
            results.append([name, "ok", ""])
        except BaseException as exc:
            unknown = isinstance(exc, NameError) and getattr(exc, "name", None) not in scope
            results.append([name, "unusable" if unknown else "fail", describe(exc)])
    return ["ran", "", results]
'''


@dataclass(frozen=True)
class Verdict:
    """One item's verification: status, the failing test and its error (trimmed), the tests that
    counted, and with mutants how many still ran and how many of those the tests killed."""

    status: str
    test: str = ""
    error: str = ""
    tests: tuple[Test, ...] = ()
    mutants: int = 0
    killed: int = 0
    mutant_details: list[dict[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "tests": len(self.tests),
                               "tests_from": sorted({t.origin for t in self.tests})}
        if self.test:
            out.update(test=self.test, error=self.error[:ERROR_CHARS])
        if self.mutant_details:
            out.update(mutants=self.mutants, killed=self.killed, mutant_results=self.mutant_details)
        return out


def _job(solution: str, tests: tuple[Test, ...], timeout: float) -> dict[str, Any]:
    return {"kind": "io", "code": HARNESS, "entry_point": ENTRY, "timeout": timeout,
            "inputs": encode([[solution, [[t.name, t.source] for t in tests]]])}


def _unpack(result: RunResult) -> tuple[str, str, list[list[str]]]:
    """(`load`|`ran`|`timed out`|`crashed`, error, per-test rows) from one harness run."""
    if result.status == "timed out":
        return "timed out", "", []
    if not result.passed:
        return "crashed", result.summary(), []
    got = (result.data or [{}])[0]
    if "ok" not in got:
        return "crashed", str(got.get("error", "no result from the harness")), []
    stage, error, rows = decode(got["ok"])
    return stage, error, [list(r) for r in rows]


class Verifier:
    """Runs items through a sandbox pool with the plan's limits; thread-safe like the pool."""

    def __init__(self, settings: Verification, sandbox: Sandbox) -> None:
        self.settings = settings
        self.sandbox = sandbox

    @classmethod
    def start(cls, settings: Verification, workers: int, unsafe_rlimits_only: bool = False) -> "Verifier":
        limits = Limits(timeout_s=settings.timeout_s, memory_mb=settings.memory_mb)
        return cls(settings, Sandbox(workers, limits, unsafe_rlimits_only=unsafe_rlimits_only))

    @property
    def containment(self) -> str:
        return self.sandbox.containment

    def close(self) -> None:
        self.sandbox.close()

    def check(self, answer: str, written: tuple[Test, ...], seed: int) -> Verdict:
        """The verdict on one answer, given the tests written from its instruction."""
        split = split_answer(answer)
        if split.solution is None:
            return Verdict(NO_CODE)
        tests = split.tests + written
        if not tests:
            return Verdict(NO_TESTS)
        stage, error, rows = _unpack(self.sandbox.run(_job(split.solution, tests, self.settings.timeout_s)))
        if stage == "timed out":
            return Verdict(TIMED_OUT, "(item)", f"over {self.settings.timeout_s} s")
        if stage != "ran":
            return Verdict(FAILED, "(solution)", error)
        by_name = {t.name: t for t in tests}
        usable = [(by_name[n], status, e) for n, status, e in rows
                  if status != "unusable" or by_name[n].origin == "answer"]
        counted = tuple(test for test, _, _ in usable)
        failing = [(test.name, e) for test, status, e in usable if status != "ok"]
        if failing:
            return Verdict(FAILED, failing[0][0], failing[0][1], counted)
        if not counted:
            return Verdict(NO_TESTS)
        if self.settings.mode == "tests+mutants":
            return self._mutate(split.solution, counted, seed)
        return Verdict(PASSED, tests=counted)

    def _mutate(self, solution: str, tests: tuple[Test, ...], seed: int) -> Verdict:
        """Passed, unless mutants still run and the tests kill none of them."""
        found = mutants(solution, self.settings.mutants, seed)
        jobs = [_job(source, tests, self.settings.timeout_s) for _, source in found]
        with ThreadPoolExecutor(max(1, min(len(jobs), self.sandbox.size))) as pool:
            results = list(pool.map(self.sandbox.run, jobs))
        details = []
        for (what, _), result in zip(found, results):
            stage, _, rows = _unpack(result)
            if stage in ("load", "crashed"):
                fate = "does not run"
            elif stage == "timed out" or any(status != "ok" for _, status, _ in rows):
                fate = "killed"
            else:
                fate = "survived"
            details.append({"mutant": what, "result": fate})
        runnable = sum(d["result"] != "does not run" for d in details)
        killed = sum(d["result"] == "killed" for d in details)
        status = VACUOUS if runnable and not killed else PASSED
        return Verdict(status, tests=tests, mutants=runnable, killed=killed, mutant_details=details)
