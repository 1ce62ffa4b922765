"""Compare the eval wing of two source trees on the same samples: metrics must not move.

Why: the eval wing's refactors must keep every score byte for byte; only the provenance
block may change its field names. This runs, for each tree, the eval stage script
(`stages/eval.py`) against a loopback OpenAI-compatible server that answers every benchmark
prompt deterministically (canonical code for a third of the tasks, a wrong answer or an
exception for the rest), in completion and in instruct mode, then `evolcoder execute` on one
fixed samples file. It compares the metrics (provenance aside), the samples files byte for
byte and the per-sample results (durations aside), and prints the provenance keys each tree
wrote. Exit 1 on any difference.

    python tools/compare_eval_metrics.py OLD_TREE NEW_TREE [--limit 6]

OLD_TREE can be made with `git worktree add /tmp/old 7179784` or
`git archive 7179784 | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "src"))

from fakeserver import FakeServer  # noqa: E402

BENCHMARKS = ["humaneval", "humaneval+", "mbpp", "mbpp+", "multipl-e-cpp", "multipl-e-js", "multipl-e-java"]
ROLES = ("base", "finetuned")  # base: completion mode; finetuned: instruct mode (wizardcoder prompts)


def _answers(limit: int, style: str) -> dict[str, str]:
    """Prompt -> the text the server answers, for both modes; a pure function of the task."""
    from evolcoder.eval.prompts import build_prompt
    from evolcoder.eval.problems import load_benchmark

    answers = {}
    for name in BENCHMARKS:
        for i, p in enumerate(load_benchmark(name).problems[:limit]):
            body = _body(p, i)
            answers[build_prompt(p, "completion", style)] = body + "\n\ndef unused():\n    pass\n"
            fence = "python" if p.language == "python" else p.language
            answers[build_prompt(p, "instruct", style)] = f" Here it is.\n```{fence}\n{p.prompt + body}\n```\nDone."
    return answers


def _body(problem: Any, i: int) -> str:
    if problem.language != "python":
        return "    return 0;\n}\n" if i % 2 else "    throw 1;\n}\n"
    if i % 3 == 0 and problem.canonical_solution:
        return problem.canonical_solution
    return "    return None\n" if i % 3 == 1 else "    raise ValueError('no')\n"


def _run_tree(tree: Path, work: Path, server_url: str, limit: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "EVOLCODER_CACHE": str(work / "cache.sqlite")}
    params = {"generate": {"backend": "openai", "base_url": server_url, "api_model": "served",
                           "max_new_tokens": 512, "mode": "instruct", "base_mode": "completion"},
              "eval": {"benchmarks": BENCHMARKS, "limit": limit, "ks": [1], "workers": 2},
              "llm": {"cache": str(work / "cache.sqlite")}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out: dict[str, Any] = {}
    for role in ROLES:
        cmd = [sys.executable, str(tree / "stages" / "eval.py"), "--params", "params.yaml", "--section", "eval",
               "--role", role, "--model", "served", "--out-dir", f"eval/{role}", "--metrics", f"m/{role}.json"]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise SystemExit(f"{tree}: eval --role {role} failed:\n{proc.stderr[-3000:]}")
        out[role] = json.loads((work / "m" / f"{role}.json").read_text())
    return out


def _execute(tree: Path, work: Path, samples: Path, benchmark: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, "-c", "from evolcoder.cli import main; main()", "execute", "--benchmark", benchmark,
           "--samples", str(samples), "--out", str(work / "exec.jsonl"), "-k", "1", "--workers", "2"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(f"{tree}: execute failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((work / "exec.jsonl.metrics.json").read_text())
    metrics.pop("wall_time_s")
    stdout = re.sub(r", [0-9.]+s\)", ", <time>)", proc.stdout)  # the wall time is the one line that moves
    return {"metrics": metrics, "results": _results(work / "exec.jsonl"), "stdout": stdout}


# MBPP+ tasks judged by EvalPlus's special comparisons (sets, "not None", sum_div, ...).
SPECIAL_MBPP_PLUS = ["Mbpp/2", "Mbpp/88", "Mbpp/124", "Mbpp/558", "Mbpp/581", "Mbpp/737", "Mbpp/787", "Mbpp/794",
                     "Mbpp/17", "Mbpp/64", "Mbpp/167", "Mbpp/230"]


def _mbpp_plus_samples(path: Path) -> Path:
    """A fixed samples file: the canonical solution and a wrong one for each special task."""
    from evolcoder.eval.problems import load_benchmark

    bench = load_benchmark("mbpp+")
    rows = []
    for task_id in (t for t in SPECIAL_MBPP_PLUS if t in bench.by_id):
        problem = bench.by_id[task_id]
        rows.append({"task_id": task_id, "solution": problem.prompt + problem.canonical_solution})
        rows.append({"task_id": task_id, "solution": f"def {problem.entry_point}(*args):\n    return None\n"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _results(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "duration_s"} for r in rows]


def _differences(old: Path, new: Path, old_m: dict, new_m: dict) -> list[str]:
    diffs = []
    for role in ROLES:
        a = {k: v for k, v in old_m[role].items() if k != "provenance"}
        b = {k: v for k, v in new_m[role].items() if k != "provenance"}
        if a != b:
            diffs.append(f"{role}: metrics differ: {sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))}")
        for name in BENCHMARKS:
            for kind in ("samples", "results"):
                pa, pb = old / "eval" / role / f"{name}.{kind}.jsonl", new / "eval" / role / f"{name}.{kind}.jsonl"
                same = pa.read_bytes() == pb.read_bytes() if kind == "samples" else _results(pa) == _results(pb)
                if not same:
                    diffs.append(f"{role}: {name}.{kind}.jsonl differs")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--limit", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("EVOLCODER_DATA_DIR", str(HERE.parent / "shared" / "data"))
    answers = _answers(args.limit, "wizardcoder")
    with tempfile.TemporaryDirectory() as tmp, FakeServer(
            responder=lambda messages: answers.get(messages[-1]["content"], "unknown prompt")) as server:
        works = {label: Path(tmp) / label for label in ("old", "new")}
        metrics = {}
        for label, tree in (("old", args.old), ("new", args.new)):
            works[label].mkdir()
            metrics[label] = _run_tree(tree.resolve(), works[label], server.base_url, args.limit)
        diffs = _differences(works["old"], works["new"], metrics["old"], metrics["new"])
        fixed = {"humaneval+": works["old"] / "eval" / "finetuned" / "humaneval+.samples.jsonl",
                 "mbpp+": _mbpp_plus_samples(Path(tmp) / "mbppplus.samples.jsonl")}
        for benchmark, samples in fixed.items():
            runs = {label: _execute(tree.resolve(), works[label], samples, benchmark)
                    for label, tree in (("old", args.old), ("new", args.new))}
            for part in ("metrics", "results", "stdout"):
                if runs["old"][part] != runs["new"][part]:
                    diffs.append(f"evolcoder execute on the fixed {benchmark} samples: {part} differ:\n"
                                 f"  old: {runs['old'][part]}\n  new: {runs['new'][part]}")
            print(f"execute {benchmark}: {runs['new']['stdout'].strip()}")
        for role in ROLES:
            for name in BENCHMARKS:
                entry = metrics["new"][role][name]
                print(f"{role:9} {name:15} pass@1 {entry['pass@1']:.4f} over {entry['n_tasks']} tasks; "
                      f"errata {len(entry['errata'])}")
        for label in ("old", "new"):
            prov = metrics[label]["finetuned"]["provenance"]
            print(f"provenance keys ({label}): {sorted(prov)}"
                  + (f"; decoding: {sorted(prov['decoding'])}" if "decoding" in prov else ""))
    print("\n".join(diffs) if diffs else "SAME: metrics (provenance aside), samples, results and `execute` output")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
