"""`evolcoder estimate`: requests, tokens and dollars of the round stages before any call.

How: each round's items (the seed stage's output, a finished round's pool, or the seed
source when nothing ran yet) go through the round's own logic in a *dry pass*: the client
answers from the cache and parks every miss without calling anyone (`defer.Deferrals`). So
what is already cached is counted as paid, exactly, and the parked requests carry their
exact prompts. The steps after a parked one (the answer after an evolution, tests and
re-answers with `evol.verify`) have prompts that do not exist yet; they are sized from the
evolution's expected completion. Rounds whose input pool does not exist yet get as many
items as the round before, with questions as long as an expected evolution.

Expected completion tokens: the mean over the completions this cache already holds for the
model; without history, `max_tokens` (so expected = upper). Request counts assume every
item survives every step, so they are an upper bound; eliminations only lower them.
Dollars: the dated table of `pricing` or `llm.price_per_1k`, online and batch (half).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.config import LLMConfig, Params, SeedConfig
from evolcoder.contracts import ROUND_FILES, round_dir
from evolcoder.evolution.plan import RoundPlan, round_plan
from evolcoder.evolution.prompts import equality_prompt, tests_prompt
from evolcoder.llm.base import ChatRequest, Completion
from evolcoder.llm.cache import CompletionCache
from evolcoder.llm.client import LLMClient, cache_location
from evolcoder.llm.defer import Deferrals
from evolcoder.llm.pricing import PRICE_TABLE_DATE, Prices, count_tokens, prices, prompt_bound, prompt_tokens, \
    tokenizer_name

ASSUMED_QUESTION_TOKENS = 64  # a seed question when the seed source cannot be read here


@dataclass
class StageEstimate:
    """One stage's still-to-pay figures (expected and upper bound)."""

    stage: str
    items: int = 0
    requests: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    prompt_tokens_upper: int = 0
    completion_tokens: int = 0
    completion_tokens_upper: int = 0
    usd: float | None = None
    usd_upper: float | None = None
    usd_batch: float | None = None
    usd_batch_upper: float | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, count: int, prompt: int, prompt_upper: int, completion: int, completion_upper: int) -> None:
        self.requests += count
        self.prompt_tokens += prompt
        self.prompt_tokens_upper += prompt_upper
        self.completion_tokens += completion
        self.completion_tokens_upper += completion_upper

    def price(self, price: Prices | None) -> None:
        if price is None:
            return
        self.usd = round(price.usd(self.prompt_tokens, self.completion_tokens), 4)
        self.usd_upper = round(price.usd(self.prompt_tokens_upper, self.completion_tokens_upper), 4)
        self.usd_batch = round(price.usd(self.prompt_tokens, self.completion_tokens, batch=True), 4)
        self.usd_batch_upper = round(price.usd(self.prompt_tokens_upper, self.completion_tokens_upper, batch=True), 4)


class _NoCalls:
    """A provider that is never called: the dry pass parks every miss before reaching it."""

    def __init__(self, name: str, model: str) -> None:
        self.name, self.model = name, model

    async def complete(self, request: ChatRequest) -> Completion:  # pragma: no cover - unreachable
        raise AssertionError("estimate never calls the endpoint")


def expected_completion(cache_path: str, provider: str, model: str, max_tokens: int) -> tuple[float, str]:
    """Mean completion tokens this cache has seen for the model, else max_tokens (said so)."""
    if Path(cache_path).exists():
        with sqlite3.connect(cache_path) as db:
            row = db.execute("SELECT AVG(completion_tokens), COUNT(*) FROM completions WHERE provider=? AND model=? "
                             "AND completion_tokens > 0", (provider, model)).fetchone()
        if row and row[1]:
            return min(float(row[0]), float(max_tokens)), f"mean of {row[1]} cached completions"
    return float(max_tokens), "no cached history for this model: expected = max_tokens"


def seed_items(seed: SeedConfig, root: Path, items: int | None) -> tuple[list[dict[str, Any]], str]:
    """Round 1's input: the seed stage's output, else the seed source read here, else assumed."""
    done = root / "data/seed/seed.jsonl"
    if done.exists():
        records = [json.loads(x) for x in done.read_text(encoding="utf-8").splitlines() if x.strip()]
        return _scaled(records, items), f"{done} ({len(records)} items)"
    source = Path(seed.path)
    records = _read_records(source) if source.is_file() else []
    if seed.n and records:
        records = records[: seed.n]
    for i, record in enumerate(records):
        record["id"] = f"estimate-{i}"
    if records:
        return _scaled(records, items), f"{source} ({len(records)} records read; not sampled by the seed stage yet)"
    count = items or seed.n or 1
    filler = " ".join(["word"] * int(ASSUMED_QUESTION_TOKENS))
    return ([{"id": f"estimate-{i}", "instruction": filler} for i in range(count)],
            f"{source} not readable here: {count} items of ~{ASSUMED_QUESTION_TOKENS} tokens assumed")


def _read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        data = json.loads(text)
    else:
        data = [json.loads(x) for x in text.splitlines() if x.strip()]
    return [r for r in data if isinstance(r, dict) and r.get("instruction")]


def _scaled(records: list[dict[str, Any]], items: int | None) -> list[dict[str, Any]]:
    """`--items N`: N items cycling through the readable ones (their lengths stand for the rest)."""
    if not items or items == len(records):
        return records
    return [{**records[i % len(records)], "id": f"estimate-{i}"} for i in range(items)]


async def _dry_pass(plan: RoundPlan, items: list[dict[str, Any]], llm: LLMConfig, cache_path: str,
                    provider_name: str) -> tuple[dict[str, ChatRequest], int]:
    """The round's own logic over the cache: the parked requests and the cache hits.

    Verification is left out of the pass (it would run model code); the test-writing request
    of each item that got this far is built by the round's own `_request` and looked up.
    """
    from evolcoder.evolution.rounds import RoundRunner

    cache = CompletionCache(Path(cache_path))
    client = LLMClient(_NoCalls(provider_name, llm.model), cache, concurrency=llm.concurrency)
    client.deferring = Deferrals()
    try:
        runner = RoundRunner(plan.model_copy(update={"verify": None}), client)
        result = await runner.run(items, progress=False)
        misses, hits = client.deferring.misses, int(client.usage()["cache_hits"])
        for outcome in result.outcomes if plan.verify is not None else []:
            if outcome.status != "kept":
                continue
            request = runner._request(tests_prompt(plan.verify.tests_template, outcome.evolved_instruction or ""),
                                      outcome.item["id"], "tests")
            key = request.cache_key(provider_name, llm.model)
            if cache.get(key) is None:
                misses[key] = request
            else:
                hits += 1
    finally:
        cache.close()
    return misses, hits


def estimate_round(plan: RoundPlan, items: list[dict[str, Any]], llm: LLMConfig, cache_path: str,
                   completion: float, question_tokens: float | None = None) -> StageEstimate:
    """What round `plan.round` still has to pay for `items` (None lengths: synthetic questions)."""
    est = StageEstimate(f"round@{plan.round}", items=len(items))
    e = int(round(completion))
    top = llm.max_tokens
    verify, equal = plan.verify, plan.elimination.llm_equality_check
    eq_fixed = count_tokens(equality_prompt(plan.equality_template, "", ""), llm.model)
    tests_fixed = count_tokens(tests_prompt(verify.tests_template, ""), llm.model) if verify else 0

    def after_evolve(count: int, question: float, question_upper: float) -> None:
        """The steps that follow an evolution whose text (E tokens, at most max_tokens) is not known yet."""
        if equal:
            est.add(count, int(count * (eq_fixed + question + e)), int(count * (eq_fixed + question_upper + top)),
                    count * e, count * top)
        est.add(count, count * (e + 7), count * (top + 16), count * e, count * top)  # the answer
        if verify:
            est.add(count, count * (tests_fixed + e), count * (tests_fixed + top + 16), count * e, count * top)
        if verify and verify.eliminate:  # re-answers only when failing verification eliminates
            est.add(count * verify.attempts, count * verify.attempts * (e + 7), count * verify.attempts * (top + 16),
                    count * verify.attempts * e, count * verify.attempts * top)

    if question_tokens is not None:  # the input pool does not exist yet: every request is to pay
        template = count_tokens(plan.template, llm.model) + 40
        est.add(len(items), int(len(items) * (template + question_tokens)), len(items) * (template + top + 16),
                len(items) * e, len(items) * top)
        after_evolve(len(items), question_tokens, top)
        est.notes.append(f"input pool not made yet: {len(items)} items with questions of ~{int(question_tokens)} tokens")
        return est
    provider = "openai" if llm.provider == "openai" else "transformers"
    misses, hits = asyncio.run(_dry_pass(plan, items, llm, cache_path, provider))
    est.cached_requests = hits
    evolve_keys = {k for k, r in misses.items() if r.messages[-1][1].startswith(plan.template.split("{", 1)[0][:40])}
    for key, request in misses.items():
        est.add(1, prompt_tokens(request, llm.model), prompt_bound(request), e, top)
    evolving = len(evolve_keys)
    question = sum(count_tokens(m.messages[-1][1], llm.model) for k, m in misses.items() if k in evolve_keys)
    after_evolve(evolving, question / max(1, evolving), top)
    tests_start = tests_prompt(verify.tests_template, "")[:40] if verify else None
    if verify:  # items parked at the answer (or judge) still need their tests
        later = sum(1 for k, r in misses.items() if k not in evolve_keys
                    and not r.messages[-1][1].startswith(tests_start))
        est.add(later, later * (tests_fixed + e), later * (tests_fixed + top + 16), later * e, later * top)
    return est


def estimate(params: str = "params.yaml", root: str | Path = ".", items: int | None = None) -> dict[str, Any]:
    """Per round stage and in total, what the params as they stand still have to pay."""
    root = Path(root)
    every = Params.load(params)  # the evolver's identity and the llm transport, as the rounds see them
    evol, llm, seed = every.evol, every.llm_config(), every.seed
    cache_path = str(root / cache_location(llm)) if not Path(cache_location(llm)).is_absolute() else cache_location(llm)
    price = prices(llm.provider, llm.model, llm.price_per_1k, llm.base_url)
    completion, completion_source = expected_completion(cache_path, llm.provider, llm.model, llm.max_tokens)
    pool, pool_source = seed_items(seed, root, items)
    stages: list[StageEstimate] = []
    synthetic: float | None = None
    for r in range(1, evol.rounds + 1):
        plan = round_plan(evol, llm, r)
        if r > 1:
            made = round_dir(root / "data/rounds", r - 1) / ROUND_FILES[0]
            if made.exists() and synthetic is None:
                pool = [json.loads(x) for x in made.read_text(encoding="utf-8").splitlines() if x.strip()]
            else:
                synthetic = completion
        est = estimate_round(plan, pool, llm, cache_path, completion, synthetic)
        est.price(price)
        stages.append(est)
    total = StageEstimate("total", items=stages[0].items if stages else 0)
    for s in stages:
        total.add(s.requests, s.prompt_tokens, s.prompt_tokens_upper, s.completion_tokens, s.completion_tokens_upper)
        total.cached_requests += s.cached_requests
    total.price(price)
    return {"model": llm.model, "provider": llm.provider, "mode": llm.mode,
            "price": dataclasses.asdict(price) if price else None, "price_table_date": PRICE_TABLE_DATE,
            "tokenizer": tokenizer_name(llm.model), "completion_tokens_expected_per_request": round(completion, 1),
            "completion_source": completion_source, "seed": pool_source, "budget_usd": llm.budget_usd,
            "stages": [dataclasses.asdict(s) for s in stages], **{k: v for k, v in dataclasses.asdict(total).items()
                                                                if k not in ("stage", "notes")},
            "not_estimated": "eval generation (local by default; through an endpoint it is priced at run time)"}


def render(result: dict[str, Any]) -> str:
    """The human table: one line per stage and the total, then where each figure comes from."""
    def usd(v: float | None) -> str:
        return "?" if v is None else f"${v:,.2f}"

    lines = [f"{'stage':<10} {'requests':>9} {'cached':>7} {'prompt tok':>12} {'compl. tok':>12} "
             f"{'online':>10} {'(upper)':>10} {'batch':>10} {'(upper)':>10}"]
    for s in [*result["stages"], {**result, "stage": "total"}]:
        lines.append(f"{s['stage']:<10} {s['requests']:>9,} {s['cached_requests']:>7,} {s['prompt_tokens']:>12,} "
                     f"{s['completion_tokens']:>12,} {usd(s['usd']):>10} {usd(s['usd_upper']):>10} "
                     f"{usd(s['usd_batch']):>10} {usd(s['usd_batch_upper']):>10}")
    price = result["price"]
    lines += [f"model {result['model']} ({result['provider']}), mode {result['mode']}; seed: {result['seed']}",
              "prices: " + (f"{price['source']} (${price['prompt']:g} / ${price['completion']:g} per 1k tokens, "
                            f"batch x{price['batch_factor']:g})" if price else "unknown: set llm.price_per_1k"),
              f"prompt tokens: {result['tokenizer']}; completion tokens: {result['completion_tokens_expected_per_request']}"
              f" per request expected ({result['completion_source']}), upper bound max_tokens",
              f"not estimated: {result['not_estimated']}"]
    if result["budget_usd"] is not None and result["usd_upper"] is not None:
        over = [s["stage"] for s in result["stages"] if (s["usd_batch_upper" if result["mode"] == "batch"
                                                           else "usd_upper"] or 0) > result["budget_usd"]]
        lines.append(f"llm.budget_usd={result['budget_usd']:g} per stage: "
                     + (f"the upper bound of {', '.join(over)} exceeds it" if over else "above every stage's upper bound"))
    return "\n".join(lines)


def budget_warning(plan: RoundPlan, items: list[dict[str, Any]], llm: LLMConfig) -> str | None:
    """Before a capped round's first call: say so when its upper bound already exceeds the cap."""
    if llm.budget_usd is None:
        return None
    price = prices(llm.provider, llm.model, llm.price_per_1k, llm.base_url)
    if price is None:
        return None  # the client refuses to start, naming llm.price_per_1k
    path = cache_location(llm)
    completion, _ = expected_completion(path, llm.provider, llm.model, llm.max_tokens)
    est = estimate_round(plan, items, llm, path, completion)
    est.price(price)
    batch = llm.mode == "batch"
    upper, expected = (est.usd_batch_upper, est.usd_batch) if batch else (est.usd_upper, est.usd)
    if upper is None or upper <= llm.budget_usd:
        return None
    return (f"round {plan.round}: the upper bound of what is still to pay (${upper:.4f}; expected ${expected:.4f}, "
            f"{est.requests} requests) exceeds llm.budget_usd={llm.budget_usd:g}: the round may stop at the cap "
            "(exit 3) with what was paid cached")


def rest_of_round(plan: RoundPlan, items: list[dict[str, Any]], llm: LLMConfig) -> str:
    """After a dollar-cap stop: what the rest of the round would cost (the cache holds what was paid)."""
    price = prices(llm.provider, llm.model, llm.price_per_1k, llm.base_url)
    path = cache_location(llm)
    completion, _ = expected_completion(path, llm.provider, llm.model, llm.max_tokens)
    est = estimate_round(plan, items, llm, path, completion)
    est.price(price)
    batch = llm.mode == "batch"
    expected, upper = (est.usd_batch, est.usd_batch_upper) if batch else (est.usd, est.usd_upper)
    if expected is None:
        return ""
    return (f"The rest of round {plan.round} ({est.requests} requests) would cost about ${expected:.4f} "
            f"(at most ${upper:.4f}).")
