"""Peak memory and time of the merge stage alone at 2k / 20k / 100k seeds (issue 22, item 3).

Synthesises a seed set of N records and one evolved round of N records (each seed's child:
its parent plus a sentence, same root) from Code Alpaca 2k with random word edits so the
texts are distinct, then runs `stages/merge.py` as a subprocess, once per code tree
(--baseline SRC_ROOT runs an older checkout's `src` + `stages` side by side), and prints
peak RSS (the child's ru_maxrss), wall and CPU seconds, and the growth ratios.

    EVOLCODER_DATA_DIR=../shared/data python benchmarks/bench_merge_memory.py \
        --seeds 20000 100000 [--baseline /tmp/main]      # --smoke: 500 seeds, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_TAILS = ["Handle empty input.", "Explain the time complexity.", "Use only the standard library.",
          "Add type hints.", "Raise ValueError on bad input.", "Do it in a single pass."]
_EXTRA = ["quickly", "carefully", "given", "sorted", "nested", "unique", "large", "small", "integer", "string"]


def _rid(i: int, kind: str) -> str:
    return f"{kind}{i:015d}"[-16:]


def synthesise(root: Path, seeds: int, data_dir: Path, rng: random.Random) -> None:
    """seed.jsonl, plan/manifest.json and rounds/r1/{kept.jsonl,stats.json}."""
    hosts = json.loads((data_dir / "codealpaca" / "code_alpaca_2k.json").read_text(encoding="utf-8"))
    (root / "plan").mkdir(parents=True)
    (root / "rounds" / "r1").mkdir(parents=True)
    (root / "plan" / "manifest.json").write_text(json.dumps({"active": [1]}))
    words = 0
    with open(root / "seed.jsonl", "w") as seed_fh, open(root / "rounds" / "r1" / "kept.jsonl", "w") as kept_fh:
        for i in range(seeds):
            h = hosts[i % len(hosts)]
            text = h["instruction"].split()
            for _ in range(3):
                text.insert(rng.randrange(len(text) + 1), rng.choice(_EXTRA) + str(rng.randrange(1000)))
            sid = _rid(i, "s")
            seed = {"id": sid, "root_id": sid, "parent_id": None, "round": 0, "method": None,
                    "instruction": " ".join(text), "input": h.get("input", ""), "output": h["output"]}
            child = {**seed, "id": _rid(i, "c"), "parent_id": sid, "round": 1, "method": "constraints",
                     "instruction": seed["instruction"] + " " + rng.choice(_TAILS),
                     "output": h["output"] + "\n# evolved"}
            words += len(child["instruction"].split())
            seed_fh.write(json.dumps(seed) + "\n")
            kept_fh.write(json.dumps(child) + "\n")
    stats = {"round": 1, "active": True, "kept": seeds, "mean_instruction_words": round(words / seeds, 2)}
    (root / "rounds" / "r1" / "stats.json").write_text(json.dumps(stats))


def params_for(tree: Path, data_dir: Path) -> dict:
    params = yaml.safe_load((tree / "params.yaml").read_text()) if (tree / "params.yaml").is_file() \
        else yaml.safe_load((REPO / "params.yaml").read_text())
    params["merge"]["data_dir"] = str(data_dir)
    return params


def run_merge(tree: Path, work: Path, data_dir: Path) -> dict[str, float]:
    """One merge in a fresh child process; its own peak RSS via wait4's rusage."""
    params = work / f"params-{tree.name}.yaml"
    params.write_text(yaml.safe_dump(params_for(tree, data_dir)))
    out = work / f"out-{tree.name}"
    cmd = [sys.executable, str(tree / "stages" / "merge.py"), "--params", str(params),
           "--seed", str(work / "seed.jsonl"), "--plan-dir", str(work / "plan"), "--rounds-dir", str(work / "rounds"),
           "--out", str(out / "train.jsonl"), "--dropped", str(out / "dropped.jsonl"), "--card", str(out / "README.md"),
           "--metrics", str(out / "merge.json"), "--evol-metrics", str(out / "evol.json"),
           "--evol-plot", str(out / "evol_rounds.json")]
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree / 'stages'}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"merge in {tree} failed ({status}):\n{stderr[-2000:]}")
    merged = json.loads((out / "merge.json").read_text())
    return {"rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "records_out": merged["records_out"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--baseline", type=Path, default=None, help="an older tree holding src/ and stages/")
    parser.add_argument("--smoke", action="store_true", help="500 seeds, this tree only: seconds")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
    sizes = [500] if args.smoke else args.seeds
    trees = [("this tree", REPO)] + ([("baseline", args.baseline)] if args.baseline and not args.smoke else [])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| tree | seeds | records in | kept | peak RSS MB | wall s | CPU s |\n|---|---|---|---|---|---|---|")
    results: dict[str, list[dict[str, float]]] = {}
    for seeds in sizes:
        with tempfile.TemporaryDirectory(prefix="bench_merge_") as tmp:
            work = Path(tmp)
            synthesise(work, seeds, data_dir, random.Random(seeds))
            for name, tree in trees:
                r = run_merge(tree, work, data_dir)
                results.setdefault(name, []).append(r)
                print(f"| {name} | {seeds} | {2 * seeds} | {r['records_out']} | {r['rss_mb']:.0f} | "
                      f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} |", flush=True)
    if len(sizes) > 1:
        print("\nGrowth from the smallest size (RSS ratio / records ratio):")
        for name, rows in results.items():
            print(f"- {name}: " + ", ".join(f"x{rows[i]['rss_mb'] / rows[0]['rss_mb']:.2f} RSS at x{sizes[i] / sizes[0]:g} "
                                            "records" for i in range(1, len(rows))))
    if len(trees) > 1:
        print("\nBaseline / this tree peak RSS: " + ", ".join(
            f"{s}: {b['rss_mb'] / t['rss_mb']:.2f}" for s, b, t in zip(sizes, results["baseline"], results["this tree"])))


if __name__ == "__main__":
    main()
