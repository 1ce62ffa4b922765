"""`evolcoder report` and the `report` stage: one Markdown page summarising a run.

It reads only what the stages already wrote under `metrics/` (missing files are skipped
with a note), so it can be run on any commit or experiment after `dvc checkout`. As the
pipeline's last stage it is rewritten by every `dvc repro`, so it always names the
`train.jsonl` on disk, and its figures are plain SVG files beside it (figures.py) that
render offline and in a pull request. `evolcoder report` can add the paper's three arms
(original data, evolved matched by samples, by tokens) from `dvc exp show`, paired over
the same tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolcoder.contracts import (EVAL_METRICS, EVOL_METRICS, EVOL_PLOT, EVOL_STOP, MERGE_METRICS, SEED_METRICS, TRAIN_METRICS,
                                 EvalMetrics, EvolMetrics, FinetuneRecord, MergeMetrics, Metrics, SeedMetrics)


def _load(metrics_dir: Path, name: str, model: type[Metrics] | type[EvalMetrics]) -> Any | None:
    """A stage's metrics file checked against its contract (None when the stage has not run)."""
    metrics = model.read_optional(metrics_dir / Path(name).name)
    return None if metrics is None else metrics.dump()


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def pass_at_k(metrics: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """{benchmark: {pass@k: value}} from an eval metrics file (`{bench: {"pass@1": ...}, "provenance": ...}`)."""
    return EvalMetrics.parse(metrics or {}, "eval metrics").pass_at_k()


def intervals(metrics: dict[str, Any] | None) -> dict[str, dict[str, list[float]]]:
    """{benchmark: {pass@k: [low, high]}}: the 95 % intervals the eval stages record."""
    return EvalMetrics.parse(metrics or {}, "eval metrics").intervals()


def _with_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def errata_lines(*metrics: Any) -> list[str]:
    """One line per task excluded (wholly or in part) from judging, with the reason."""
    seen: dict[tuple[str, str], str] = {}
    for m in metrics:
        for bench, scores in (m or {}).items():
            for e in (scores.get("errata") or []) if isinstance(scores, dict) else []:
                what = f"inputs {e.get('inputs')}" if e.get("excluded") == "inputs" else "the whole task"
                seen[(bench, e.get("task_id", "?"))] = f"- {bench} {e.get('task_id')}: {what} not judged: {e.get('why')}"
    return list(seen.values())


def evolution_section(evol: dict[str, Any] | None, merge: dict[str, Any] | None) -> list[str]:
    out = ["## Evolution"]
    if not evol:
        return out + ["", "_no metrics/evol.json_"]
    rows, reasons = [], set()
    for stats in evol.get("per_round", {}).values():
        reasons |= set(stats.get("eliminated_by_reason", {}))
    reasons_sorted = sorted(reasons)
    totals = {"prompt": 0, "completion": 0, "cost": 0.0}
    for key, s in sorted(evol.get("per_round", {}).items(), key=lambda kv: int(kv[0][1:])):
        by_reason = s.get("eliminated_by_reason", {})
        rows.append([key, s.get("items_in"), s.get("kept"), s.get("eliminated"), s.get("failed"),
                     *[by_reason.get(r, 0) for r in reasons_sorted], s.get("mean_instruction_words"),
                     s.get("llm_requests", 0), s.get("llm_cache_hits", 0),
                     s.get("llm_prompt_tokens", 0) + s.get("llm_completion_tokens", 0),
                     s.get("llm_est_cost", "")])
        totals["prompt"] += s.get("llm_prompt_tokens", 0)
        totals["completion"] += s.get("llm_completion_tokens", 0)
        totals["cost"] += s.get("llm_est_cost", 0.0) or 0.0
    out += [""] + _table(["round", "in", "kept", "eliminated", "failed",
                          *[f"elim: {r}" for r in reasons_sorted], "mean instr. words",
                          "requests", "cache hits", "tokens", "est. cost"], rows)
    out += ["", f"Tokens: {totals['prompt']} prompt + {totals['completion']} completion"
            + (f"; estimated cost {totals['cost']:.4f}" if totals["cost"] else "") + "."]
    out += verification_lines(evol)
    if merge:
        out += ["", f"Merge: {merge.get('records_in')} records in, {merge.get('records_out')} training records "
                f"out; dropped {merge.get('dropped', {})}; train sha256 `{str(merge.get('train_sha256'))[:16]}`."]
    return out


def verification_lines(evol: dict[str, Any]) -> list[str]:
    """evol.verify's figures per round: share of verified answers, mutants killed, verdicts."""
    rounds = sorted(((k, s) for k, s in evol.get("per_round", {}).items() if "verified_fraction" in s),
                    key=lambda kv: int(kv[0][1:]))
    if not rounds:
        return []
    statuses = sorted({status for _, s in rounds for status in s.get("verify_by_status", {})})
    rows = [[k, s.get("verified_fraction"), "" if s.get("mutant_kill_rate") is None else s["mutant_kill_rate"],
             *[s.get("verify_by_status", {}).get(status, 0) for status in statuses], s.get("verify_reanswers", 0)]
            for k, s in rounds]
    return ["", "Execution verification (`evol.verify`):", ""] + _table(
        ["round", "verified fraction", "mutant kill rate", *statuses, "re-answers"], rows)


def training_section(train: dict[str, Any] | None) -> list[str]:
    out = ["## Fine-tuning"]
    if not train:
        return out + ["", "_no metrics/train.json_"]
    flat = {k: v for k, v in train.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return out + [""] + _table(["metric", "value"], [[k, v] for k, v in sorted(flat.items())])


def eval_section(base: Any, tuned: Any, dev: Any) -> list[str]:
    out = ["## Evaluation (pass@k, 95 % interval)"]
    base_scores, tuned_scores, dev_scores = pass_at_k(base), pass_at_k(tuned), pass_at_k(dev)
    base_ci, tuned_ci = intervals(base), intervals(tuned)
    rows = []
    for bench in sorted(set(base_scores) | set(tuned_scores)):
        for k in sorted(set(base_scores.get(bench, {})) | set(tuned_scores.get(bench, {}))):
            b, t = base_scores.get(bench, {}).get(k), tuned_scores.get(bench, {}).get(k)
            delta = t - b if isinstance(b, float) and isinstance(t, float) else ""
            rows.append([bench, k, _with_ci(b, base_ci.get(bench, {}).get(k)),
                         _with_ci(t, tuned_ci.get(bench, {}).get(k)), delta])
    modes = [_decoding(m) for m in (base, tuned)]
    headers = ["benchmark", "k", f"base ({modes[0]})", f"fine-tuned ({modes[1]})", "delta"]
    out += [""] + (_table(headers, rows) if rows else ["_no eval metrics_"])
    if rows and modes[0] != modes[1]:
        out += ["", f"**Not like for like:** base and fine-tuned were prompted or decoded differently "
                f"({modes[0]} vs {modes[1]}); set `generate.base_mode` equal to `generate.mode`."]
    if rows:
        out += ["", "Intervals: Wilson for one sample per task, else a seeded bootstrap over tasks. "
                "`<benchmark>/base` is the EvalPlus benchmark's base tests, judged in the same run."]
    errata = errata_lines(base, tuned, dev)
    if errata:
        out += ["", "Dataset errata (inputs where the canonical solution itself fails here; EvalPlus "
                "judges them):", *errata]
    dev_ci = intervals(dev)
    for bench, scores in sorted(dev_scores.items()):
        out += ["", f"Dev set ({bench}): " + ", ".join(
            f"{k} = {_with_ci(v, dev_ci.get(bench, {}).get(k))}" for k, v in sorted(scores.items()))]
    lines = [line for label, m in (("base", base), ("fine-tuned", tuned), ("dev", dev)) if (line := _verdict(label, m))]
    return out + (["", "What decided the verdicts:", ""] + lines if lines else [])


def _verdict(label: str, metrics: Any) -> str | None:
    """One line of an eval metrics file's verdict provenance: prompt, backend, dtype, versions, time limit."""
    prov = (metrics or {}).get("provenance") or {}
    if "prompt_style" not in prov:
        return None
    batch = f", batch {prov['batch_size']}" if prov.get("batch_size") else ""
    versions = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("versions") or {}).items()))
    limit = (prov.get("time_limit") or {}).get("timeout_s")
    return (f"- {label}: prompt `{prov['prompt_style']}`, {prov.get('backend')} {prov.get('dtype')}{batch}; "
            f"{versions}; time limit floor eval.timeout_s = {limit} s")


def _decoding(metrics: Any) -> str:
    """Prompt mode and resolved dtype of one eval metrics file, e.g. `completion, float32`."""
    prov = (metrics or {}).get("provenance") or {}
    decoding = prov.get("decoding") or prov  # one flat block since issue 21; `decoding` before
    return ", ".join(str(decoding[k]) for k in ("mode", "dtype") if decoding.get(k)) or "?"


def evolstop_section(evolstop: Any) -> list[str]:
    """The sweep as `evolcoder evol-stop` wrote it (metrics/evol_stop.json): dev pass@1 per
    round count, the paired difference to the best with its 95 % interval, the choice."""
    out = ["## Evol-stop (dev pass@1 by rounds)"]
    if not evolstop or not isinstance(evolstop, list):
        return out + ["", "_run `evolcoder evol-stop` after a sweep over `evol.rounds`_"]
    rows = [[r.get("rounds"), r.get("dev_pass@1"), r.get("test_pass@1", ""),
             "" if r.get("best_minus_this") is None else
             f"{r['best_minus_this']:+.4f} [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]",
             "yes" if r.get("chosen") else "", r.get("experiment", "")] for r in evolstop]
    out += [""] + _table(["rounds", "dev pass@1", "test pass@1", "best minus this (95 % CI)", "chosen",
                          "experiment"], rows)
    chosen = next((r for r in evolstop if r.get("chosen")), None)
    if chosen is not None:
        out += ["", f"Chosen: **{chosen.get('rounds')} rounds** ({chosen.get('why', '')})."]
    return out


def data_section(merge: dict[str, Any] | None, evol: dict[str, Any] | None,
                 figures: list[tuple[str, str]]) -> list[str]:
    """The training set this run wrote (full sha256), the control arm, test similarity by round."""
    out = ["## Training data"]
    if not merge:
        return out + ["", "_no metrics/merge.json_"]
    out += ["", f"`data/train/train.jsonl` sha256 `{merge.get('train_sha256')}`: {merge.get('records_out')} records "
            f"({', '.join(f'{k} {v}' for k, v in merge.get('by_round', {}).items())})."]
    near = merge.get("near_duplicates")
    if near:
        out += ["", f"Near-duplicates: {near['measure']} >= {near['threshold']}; {near['lineage']}."]
    control = merge.get("control")
    if control:
        out += ["", f"Control arm `merge.match: {control['by']}` (evolved records only, seed {control['seed']}):", ""]
        out += _table(["", "records", "tokens"],
                      [["seed set", control["seed_records"], control.get("seed_tokens") or ""],
                       ["evolved, available", control["evolved_records"], control.get("evolved_tokens") or ""],
                       ["trained on", control["train_records"], control.get("train_tokens") or ""]])
    sim = (evol or {}).get("test_similarity")
    if sim:
        benches = sim.get("benchmarks", [])
        rows = [[key, r.get("records"), r.get("mean"),
                 *[(r.get("by_benchmark", {}).get(b) or {}).get("p90", "") for b in benches],
                 *[(r.get("by_benchmark", {}).get(b) or {}).get("max", "") for b in benches]]
                for key, r in sorted(sim.get("rounds", {}).items(), key=lambda kv: int(kv[0][1:]))]
        out += ["", f"Test-set similarity by round: {sim['measure']}.", ""]
        out += _table(["round", "records", "mean", *[f"{b} p90" for b in benches], *[f"{b} max" for b in benches]],
                      rows)
    for title, rel in figures:
        out += ["", f"![{title}]({rel})"]
    return out


def write_figures(metrics_dir: str | Path, out_dir: str | Path) -> list[tuple[str, Path]]:
    """SVG figures from this run's metrics (by round); returns (title, path) of each written."""
    from evolcoder.figures import line_svg
    from evolcoder.jsonio import atomic_open

    plot = Path(metrics_dir) / Path(EVOL_PLOT).name
    rows = json.loads(plot.read_text(encoding="utf-8")) if plot.is_file() else []
    out = Path(out_dir)
    written: list[tuple[str, Path]] = []
    xs = [float(r["round"]) for r in rows]
    charts = [("test_similarity", "Test-set similarity by round", "mean nearest-record TF-IDF cosine"),
              ("mean_instruction_words", "Instruction length by round", "mean words")]
    for key, title, ylabel in charts:
        if not rows or all(r.get(key) is None for r in rows):
            continue
        path = out / f"{key}.svg"
        with atomic_open(path) as fh:
            fh.write(line_svg(title, "round", ylabel, xs, {key: [r.get(key) for r in rows]}))
        written.append((title, path))
    return written


def build_report(metrics_dir: str | Path = "metrics", figures: list[tuple[str, str]] | None = None,
                 arms: list[str] | None = None) -> str:
    m = Path(metrics_dir)
    parts = ["# evolcoder run report", ""]
    seed = _load(m, SEED_METRICS, SeedMetrics)
    if seed:
        parts += [f"Seed: {seed.get('written')} instructions ({seed.get('skipped', 0)} skipped, "
                  f"{seed.get('duplicates', 0)} duplicates).", ""]
    evol, merge = _load(m, EVOL_METRICS, EvolMetrics), _load(m, MERGE_METRICS, MergeMetrics)
    evals = [_load(m, EVAL_METRICS[stage], EvalMetrics) for stage in ("eval_base", "eval", "dev")]
    stop_file = m / Path(EVOL_STOP).name
    stop = json.loads(stop_file.read_text(encoding="utf-8")) if stop_file.is_file() else None
    for section in (data_section(merge, evol, figures or []), evolution_section(evol, merge),
                    training_section(_load(m, TRAIN_METRICS, FinetuneRecord)), eval_section(*evals),
                    evolstop_section(stop), arms or []):
        if section:
            parts += section + [""]
    return "\n".join(parts)


def write_report(metrics_dir: str | Path, out: str | Path, figures_dir: str | Path,
                 arms: list[str] | None = None) -> tuple[Path, list[Path]]:
    """The report and its SVG figures, each written atomically; figures are linked relative
    to the report so the page renders wherever the two are copied together."""
    import os

    from evolcoder.jsonio import atomic_open

    out = Path(out)
    written = write_figures(metrics_dir, figures_dir)
    links = [(title, Path(os.path.relpath(path, out.parent)).as_posix()) for title, path in written]
    with atomic_open(out) as handle:
        handle.write(build_report(metrics_dir, links, arms))
    return out, [path for _, path in written]
