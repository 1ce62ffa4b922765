"""Agreement and speed: `evolcoder execute` vs evalplus's `evaluate` on HumanEval+ and MBPP+.

One run, side by side, the same samples: each task's canonical solution plus realistic wrong
ones made here (AST mutants of the canonical solution, a hang, an early exit). Both harnesses
run as a user runs them (a fresh CLI process each), with the same number of workers, after a
warm-up that fills both ground-truth caches, so the timed runs compare judging only.

Prints per-sample agreement on the base tests and on base + plus tests separately, every
disagreement with its explanation (an evalplus bug, a documented erratum, or one that
re-judging alone reverses: a timeout under load), both wall times and the ratio.

evalplus comes from the optional `bench` extra (`pip install -e '.[bench]'`); it reads the
local dataset files through HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH, never the network.
evalplus insists that the samples cover every task of its dataset, so with `--limit` it is
given a copy of the dataset cut to the same tasks.

    python benchmarks/bench_evalplus.py [--limit 40] [--mutants 3] [--workers 2] [--only humaneval+]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
FILES = {"humaneval+": ("humaneval", "HUMANEVAL_OVERRIDE_PATH", "humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz"),
         "mbpp+": ("mbpp", "MBPP_OVERRIDE_PATH", "mbppplus/MbppPlus-v0.2.0.jsonl.gz")}
EVALPLUS_BUGS = {"HumanEval/32": "evalplus bug: find_zero's special oracle `continue`s before it counts the input "
                                 "as done, so every sample (the canonical one too) is reported as failed"}

_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
          ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.And: ast.Or,
          ast.Or: ast.And, ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}


def _sites(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Places one small, realistic edit can go: an operator, a comparison, an int constant."""
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in _SWAPS:
            found.append((node, "op"))
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAPS:
            found.append((node, "cmp"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            found.append((node, "int"))
    return found


def mutants(solution: str, count: int, rng: random.Random) -> list[str]:
    """Up to `count` distinct one-edit mutants of a program that still parse."""
    try:
        sites = len(_sites(ast.parse(solution)))
    except SyntaxError:
        return []
    out: list[str] = []
    for index in rng.sample(range(sites), min(sites, count * 2)):
        tree = ast.parse(solution)
        node, kind = _sites(tree)[index]
        if kind == "op":
            node.op = _SWAPS[type(node.op)]()
        elif kind == "cmp":
            node.ops[0] = _SWAPS[type(node.ops[0])]()
        else:
            node.value += 1
        text = ast.unparse(tree)
        if text not in out:
            out.append(text)
        if len(out) == count:
            break
    return out


def _first_statement(solution: str, entry: str, statement: str) -> str | None:
    """The solution with `statement` as the first line of the entry point's body."""
    tree = ast.parse(solution)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            node.body.insert(0, ast.parse(statement).body[0])
            return ast.unparse(tree)
    return None


def samples_for(problems: list[dict], mutant_count: int, seed: int) -> list[dict]:
    """Canonical, mutants, a hang and an early exit per task, as `solution` samples."""
    rng = random.Random(seed)
    out = []
    for p in problems:
        solution = p["prompt"] + p["canonical_solution"]
        kinds = [("canonical", solution)] + [("mutant", m) for m in mutants(solution, mutant_count, rng)]
        for kind, stmt in (("hang", "while True:\n    pass"), ("exit", "raise SystemExit(0)")):
            edited = _first_statement(solution, p["entry_point"], stmt)
            if edited:
                kinds.append((kind, edited))
        out += [{"task_id": p["task_id"], "solution": text, "kind": kind} for kind, text in kinds]
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_ours(name: str, samples: Path, out: Path, workers: int, cache: Path) -> tuple[float, list[dict]]:
    env = {**os.environ, "EVOLCODER_CACHE_DIR": str(cache), "EVOLCODER_DATA_DIR": str(DATA),
           "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evolcoder.cli", "execute", "--benchmark", name, "--samples",
                           str(samples), "--out", str(out), "-k", "1", "--workers", str(workers)],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"evolcoder execute failed:\n{proc.stderr[-3000:]}")
    inner = json.loads(Path(f"{out}.metrics.json").read_text())["wall_time_s"]
    return (elapsed, inner), [json.loads(line) for line in out.read_text().splitlines()]


def run_evalplus(name: str, dataset: Path, samples: Path, workers: int, cache: Path) -> tuple[float, list[dict]]:
    family, var, _ = FILES[name]
    result = Path(str(samples).replace(".jsonl", "_eval_results.json"))
    result.unlink(missing_ok=True)
    env = {**os.environ, var: str(dataset), "XDG_CACHE_HOME": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    code = ("import os, sys, time\nfrom evalplus.evaluate import evaluate\nt = time.perf_counter()\n"
            f"evaluate(dataset={family!r}, samples={str(samples)!r}, parallel={workers})\n"
            "print('EVALUATE_S', time.perf_counter() - t)\nsys.stdout.flush()\nos._exit(0)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "EVALUATE_S" not in proc.stdout:
        raise SystemExit(f"evalplus failed:\n{proc.stderr[-3000:]}")
    inner = float(proc.stdout.rsplit("EVALUATE_S", 1)[1].split()[0])
    verdicts = json.loads(result.read_text())["eval"]
    rows = []
    for task_id, per in verdicts.items():
        for i, r in enumerate(per):
            rows.append({"task_id": task_id, "completion_id": i, "base": r["base_status"] == "pass",
                         "plus": r["base_status"] == "pass" and r["plus_status"] == "pass"})
    return (elapsed, inner), rows


def keyed(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["task_id"], r["completion_id"]): r for r in rows}


def explain(name: str, key: tuple[str, int], errata: dict[str, str], rejudged: dict) -> str:
    task_id = key[0]
    if task_id in EVALPLUS_BUGS:
        return EVALPLUS_BUGS[task_id]
    if task_id in errata:
        return f"documented erratum: {errata[task_id]}"
    if key in rejudged:
        return rejudged[key]
    return "UNEXPLAINED"


def judge_alone(name: str, work: Path, dataset_rows: list[dict], samples: list[dict], keys: list, workers: int,
                cache: dict[str, Path], ours: dict, theirs: dict) -> dict:
    """Re-judge each disagreeing sample on its own with both harnesses; a flip that restores
    agreement is a timeout under load (whose harness flipped is named)."""
    out = {}
    for n, key in enumerate(keys):
        task_id, cid = key
        sample = [s for s in samples if s["task_id"] == task_id][cid]
        d = work / f"alone{n}"
        d.mkdir()
        write_jsonl(d / "samples.jsonl", [sample])
        write_gz(d / "data.jsonl.gz", [r for r in dataset_rows if r["task_id"] == task_id])
        _, o = run_ours(name, d / "samples.jsonl", d / "out.jsonl", 1, cache["ours"])
        _, e = run_evalplus(name, d / "data.jsonl.gz", d / "samples.jsonl", 1, cache["evalplus"])
        mine = (o[0].get("base_passed", o[0]["passed"]), o[0]["passed"])
        theirs_now = (e[0]["base"], e[0]["plus"])
        before = (ours[key].get("base_passed", ours[key]["passed"]), ours[key]["passed"])
        if mine == theirs_now:
            who = "evalplus" if theirs_now != (theirs[key]["base"], theirs[key]["plus"]) else "evolcoder"
            if mine != before:
                who = "evolcoder"
            out[key] = f"{who} timeout under load: re-judged alone, both agree ({sample['kind']})"
    return out


def write_gz(path: Path, rows: list[dict]) -> None:
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))


def bench(name: str, limit: int, mutant_count: int, workers: int, seed: int, work: Path) -> dict:
    _, _, rel = FILES[name]
    rows = [json.loads(line) for line in gzip.decompress((DATA / rel).read_bytes()).decode().splitlines() if line]
    rows = rows[:limit] if limit else rows
    dataset = work / f"{name}.jsonl.gz"
    write_gz(dataset, rows)
    samples = samples_for(rows, mutant_count, seed)
    path = work / f"{name}.samples.jsonl"
    write_jsonl(path, [{"task_id": s["task_id"], "solution": s["solution"]} for s in samples])
    cache = {"ours": work / "cache-ours", "evalplus": work / "cache-evalplus"}
    warm = work / f"{name}.warm.jsonl"  # fill both ground-truth caches: the timed runs judge only
    write_jsonl(warm, [{"task_id": r["task_id"], "solution": r["prompt"] + r["canonical_solution"]} for r in rows])
    run_ours(name, warm, work / f"{name}.warm.out.jsonl", workers, cache["ours"])
    run_evalplus(name, dataset, warm, workers, cache["evalplus"])
    ours_s, ours_rows = run_ours(name, path, work / f"{name}.out.jsonl", workers, cache["ours"])
    theirs_s, theirs_rows = run_evalplus(name, dataset, path, workers, cache["evalplus"])
    ours, theirs = keyed(ours_rows), keyed(theirs_rows)
    metrics = json.loads((work / f"{name}.out.jsonl.metrics.json").read_text())
    errata = {e["task_id"]: f"{e['task_id']} {e['excluded']} {e.get('inputs', '')} {e['why']}".strip()
              for e in metrics.get("errata", [])}
    keys = sorted(ours)
    kinds = {(s["task_id"], i): s["kind"] for task in {s["task_id"] for s in samples}
             for i, s in enumerate(x for x in samples if x["task_id"] == task)}
    split = {"base": lambda o: o.get("base_passed", o["passed"]), "plus": lambda o: o["passed"]}
    differ = {level: [k for k in keys if split[level](ours[k]) != theirs[k][level]] for level in split}
    suspects = sorted({k for ks in differ.values() for k in ks if k[0] not in EVALPLUS_BUGS and k[0] not in errata})
    rejudged = judge_alone(name, work, rows, samples, suspects, workers, cache, ours, theirs) if suspects else {}
    explained = {k: explain(name, k, errata, rejudged) for ks in differ.values() for k in ks}
    outside = [k for k in keys if k not in explained]
    def p1(rows_: list, fn) -> float:
        return sum(fn(r) for r in rows_) / max(1, len(rows_))
    return {"name": name, "tasks": len(rows), "samples": len(samples), "kinds": dict(Counter(s["kind"] for s in samples)),
            "ours_s": ours_s, "evalplus_s": theirs_s, "differ": differ, "explained": explained, "kinds_of": kinds,
            "agree": {level: 1 - len(differ[level]) / len(keys) for level in split},
            "pass1": {"evolcoder": {lv: p1([ours[k] for k in outside], split[lv]) for lv in split},
                      "evalplus": {lv: p1([theirs[k] for k in outside], lambda r, lv=lv: r[lv]) for lv in split}}}


def report(r: dict) -> None:
    print(f"\n{r['name']}: {r['tasks']} tasks, {r['samples']} samples {r['kinds']}")
    for level in ("base", "plus"):
        label = "base tests" if level == "base" else "base + plus tests"
        print(f"  agreement on {label}: {r['agree'][level]:.2%} ({len(r['differ'][level])} differ)")
        for key in r["differ"][level]:
            print(f"    {key[0]} #{key[1]} ({r['kinds_of'][key]}): {r['explained'][key]}")
    unexplained = sum(v == "UNEXPLAINED" for v in r["explained"].values())
    print(f"  unexplained disagreements: {unexplained}")
    for who in ("evolcoder", "evalplus"):
        p = r["pass1"][who]
        print(f"  pass@1 outside the explained samples, {who}: base {p['base']:.4f}, base+plus {p['plus']:.4f}")
    (o_cli, o_in), (e_cli, e_in) = r["ours_s"], r["evalplus_s"]
    print(f"  wall, whole CLI process: evolcoder execute {o_cli:.1f} s, evalplus {e_cli:.1f} s "
          f"(ratio {o_cli / e_cli:.2f}x)")
    print(f"  wall, judging only (evaluate_samples / evalplus evaluate()): evolcoder {o_in:.1f} s, "
          f"evalplus {e_in:.1f} s (ratio {o_in / e_in:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=40, help="First N tasks of each benchmark (0: all).")
    parser.add_argument("--mutants", type=int, default=3, help="AST mutants per task.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(FILES), default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: CI checks the bench still runs")
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.mutants = 2, 1
    try:
        import evalplus  # noqa: F401
    except ImportError:
        raise SystemExit("evalplus is not installed: pip install -e '.[bench]'") from None
    work = Path(tempfile.mkdtemp(prefix="bench-evalplus-"))
    print(f"load average at start: {os.getloadavg()[0]:.2f}; work dir {work}")
    total = time.perf_counter()
    for name in [args.only] if args.only else sorted(FILES):
        report(bench(name, args.limit, args.mutants, args.workers, args.seed, work))
    print(f"\nwhole run: {time.perf_counter() - total:.0f} s; load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
