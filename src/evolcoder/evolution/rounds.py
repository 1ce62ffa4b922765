"""One round of Code Evol-Instruct: rewrite each instruction harder, answer it, judge it.

Every item ends as kept, eliminated (with the rule's reason) or failed (with the error);
nothing disappears. The heuristic for an item is drawn from an RNG keyed on
(round seed, round, item id), and outputs are written in input order, so the round's
data is identical whatever the concurrency or the order in which requests finish.
An eliminated or failed item's parent goes on to the next round, as in WizardLM.

A failure is transient (the endpoint erred, timed out or answered nothing, even after
retries: a re-run would retry it) or permanent (the endpoint rejected the request). A
round with transient failures is not done: `RoundResult.incomplete` says why, and the
stage fails without writing anything, so DVC re-runs it and the cache replays every
answered request for free.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from evolcoder.errors import BudgetExhausted, EndpointDown, LLMError
from evolcoder.evolution import eliminate
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.checks import written_tests
from evolcoder.evolution.prompts import equality_prompt, evol_prompt, tests_prompt
from evolcoder.evolution.verify import Verdict, Verifier
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.client import CallResult, LLMClient
from evolcoder.records import child_record


def _derive(*parts: object) -> int:
    blob = ":".join(map(str, parts)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def draw_method(seed: int, round_no: int, item_id: str, weights: dict[str, float]) -> str:
    """The heuristic for one item: a pure function of (seed, round, item id, weights)."""
    names = sorted(n for n, w in weights.items() if w > 0)
    rng = random.Random(_derive(seed, round_no, item_id))
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def question_text(item: dict[str, Any]) -> str:
    """The instruction as the rewriter sees it; a Code Alpaca `input` is folded in."""
    if item.get("input"):
        return f"{item['instruction']}\n\n{item['input']}"
    return item["instruction"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one input item in a round."""

    item: dict[str, Any]
    status: str  # kept | eliminated | failed
    method: str
    reason: str | None = None
    rule: str | None = None  # the elimination rule's name, counted in the stats
    child: dict[str, Any] | None = None
    evolved_instruction: str | None = None
    cause: str | None = None  # failed: why, in one word (server_error, timeout, empty, invalid_request...)
    permanent: bool = False  # failed: the endpoint rejected the request, a re-run would not help
    verdict: Verdict | None = None  # evol.verify: the last answer's verification
    reanswers: int = 0  # evol.verify_attempts used

    def record(self) -> dict[str, Any]:
        out = {"id": self.item["id"], "status": self.status, "method": self.method,
               "reason": self.reason, "rule": self.rule, "cause": self.cause,
               "child_id": self.child["id"] if self.child else None,
               "evolved_instruction": self.evolved_instruction,
               "response": self.child["output"] if self.child else None}
        if self.verdict is not None:
            out["verify"] = {**self.verdict.record(), "reanswers": self.reanswers}
        return out


class Tally:
    """A round's figures, added up one outcome at a time.

    The streaming round never holds its outcomes, so its stats are sums kept as they
    pass; the in-memory `RoundResult` adds its list through the same tally, so both write
    the same bytes.
    """

    def __init__(self) -> None:
        self.items = 0
        self.statuses: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.failed_causes: Counter[str] = Counter()
        self.transient_causes: Counter[str] = Counter()
        self.first_transient: str | None = None
        self.permanent = 0
        self.kept_words = 0
        self.pool_words = 0
        self.verdicts = 0
        self.verify_statuses: Counter[str] = Counter()
        self.verify_passed = 0
        self.reanswers = 0
        self.killed = 0
        self.mutants = 0  # runnable mutants of answers that had any

    def add(self, o: Outcome) -> None:
        self.items += 1
        self.statuses[o.status] += 1
        self.methods[o.method] += 1
        self.reanswers += o.reanswers
        if o.status == "eliminated":
            self.reasons[o.rule or o.reason] += 1
        if o.status == "failed":
            self.failed_causes[o.cause or "error"] += 1
            self.permanent += o.permanent
            if not o.permanent:
                self.transient_causes[o.cause or "error"] += 1
                self.first_transient = self.first_transient or o.reason or ""
        if o.child is not None:
            self.kept_words += len(o.child["instruction"].split())
        self.pool_words += len((o.child if o.child is not None else o.item)["instruction"].split())
        if o.verdict is not None:
            self.verdicts += 1
            self.verify_statuses[o.verdict.status] += 1
            self.verify_passed += o.verdict.passed
            if o.verdict.mutant_details:
                self.killed += o.verdict.killed
                self.mutants += o.verdict.mutants

    def stats(self, round_no: int, wall_s: float, usage: dict[str, Any], verifying: bool) -> dict[str, Any]:
        kept = self.statuses["kept"]
        return {
            "round": round_no,
            "active": True,
            "items_in": self.items,
            "kept": kept,
            "eliminated": self.statuses["eliminated"],
            "failed": self.statuses["failed"],
            "eliminated_by_reason": dict(sorted(self.reasons.items())),
            "failed_permanent": self.permanent,
            "failed_by_cause": dict(sorted(self.failed_causes.items())),
            "methods": dict(sorted(self.methods.items())),
            "mean_instruction_words": round(self.kept_words / kept, 2) if kept else 0.0,
            "mean_pool_instruction_words": round(self.pool_words / max(1, self.items), 2),
            "wall_s": round(wall_s, 3),
            **{f"llm_{k}": v for k, v in usage.items()},
            **(self.verify_stats() if verifying else {}),
        }

    def verify_stats(self) -> dict[str, Any]:
        """Verification figures, only when the round verified (a round without it keeps its bytes)."""
        return {
            "verify_items": self.verdicts,
            "verify_by_status": dict(sorted(self.verify_statuses.items())),
            "verify_reanswers": self.reanswers,
            "verified_fraction": round(self.verify_passed / self.verdicts, 4) if self.verdicts else 0.0,
            "mutant_kill_rate": round(self.killed / self.mutants, 4) if self.mutants else None,
        }

    def incomplete(self, round_no: int, max_failed_fraction: float = 0.0) -> str | None:
        """Why this round must not be written as done, or None when it may be.

        Transient failures beyond `max_failed_fraction` of the items make it incomplete;
        permanent ones (rejected requests) are counted and reported but never retried.
        """
        transient = sum(self.transient_causes.values())
        if not transient or transient <= max_failed_fraction * self.items:
            return None
        why = ", ".join(f"{cause} {n}" for cause, n in self.transient_causes.most_common())
        return (f"round {round_no}: {transient} of {self.items} items failed after retries "
                f"({why}; e.g. {self.first_transient})"
                + (f", and {self.permanent} were rejected by the endpoint" if self.permanent else "")
                + ". Nothing was written. Every answered request is cached, so a re-run (`dvc repro`) "
                f"retries only the {transient} failed items; llm.max_failed_fraction="
                f"{max_failed_fraction} allows no more than {int(max_failed_fraction * self.items)}.")


@dataclass
class RoundResult:
    round: int
    outcomes: list[Outcome]
    usage: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    verifying: bool = False

    def pool(self) -> list[dict[str, Any]]:
        """Next round's input: kept children, and the parents of everything else."""
        return [o.child if o.child is not None else o.item for o in self.outcomes]

    def kept(self) -> list[dict[str, Any]]:
        return [o.child for o in self.outcomes if o.child is not None]

    def tally(self) -> Tally:
        tally = Tally()
        for outcome in self.outcomes:
            tally.add(outcome)
        return tally

    def stats(self) -> dict[str, Any]:
        return self.tally().stats(self.round, self.wall_s, self.usage, self.verifying)

    def verify_stats(self) -> dict[str, Any]:
        return self.tally().verify_stats() if self.verifying else {}

    def incomplete(self, max_failed_fraction: float = 0.0) -> str | None:
        return self.tally().incomplete(self.round, max_failed_fraction)


@dataclass
class StreamedRound:
    """What a streamed round leaves once its outcomes are written: the tally, not the items."""

    round: int
    tally: Tally
    usage: dict[str, Any]
    wall_s: float
    verifying: bool

    def stats(self) -> dict[str, Any]:
        return self.tally.stats(self.round, self.wall_s, self.usage, self.verifying)

    def incomplete(self, max_failed_fraction: float = 0.0) -> str | None:
        return self.tally.incomplete(self.round, max_failed_fraction)


class RoundRunner:
    """Evolves a list of items with one plan through one LLM client."""

    def __init__(self, plan: RoundPlan, client: LLMClient, verifier: Verifier | None = None) -> None:
        if not plan.active or plan.evolver is None or plan.elimination is None:
            raise ValueError(f"round {plan.round} is inactive; it has nothing to run")
        self.plan = plan
        self.client = client
        self.round = plan.round
        self.seed = plan.seed
        self.weights = plan.methods
        self.rules = plan.elimination
        self.sampling = {"temperature": plan.evolver.temperature, "top_p": plan.evolver.top_p,
                         "max_tokens": plan.evolver.max_tokens}
        self.base_seed = plan.evolver.seed
        self.verifier = verifier if plan.verify is not None else None

    def _request(self, content: str, item_id: str, purpose: str) -> ChatRequest:
        seed = _derive(self.base_seed, self.seed, self.round, item_id, purpose) % (2**31)
        return ChatRequest.user(content, seed=seed, **self.sampling)

    def _cut_off(self, result: CallResult) -> str | None:
        """The finish reason the truncation rule should see: none when `drop_truncated` is off."""
        return result.finish_reason if self.rules.drop_truncated else None

    @staticmethod
    def _eliminated(item: dict[str, Any], method: str, reason: eliminate.Reason, instruction: str) -> Outcome:
        return Outcome(item, "eliminated", method, str(reason), rule=reason.rule, evolved_instruction=instruction)

    async def evolve_item(self, item: dict[str, Any]) -> Outcome:
        method = draw_method(self.seed, self.round, item["id"], self.weights)
        try:
            rewrite = await self.client.complete(
                self._request(evol_prompt(self.plan.template, self.plan.heuristics[method], question_text(item)),
                              item["id"], "evolve"))
            instruction = rewrite.text.strip()
            reason = eliminate.check_instruction(question_text(item), instruction,
                                                 self.rules.similarity_threshold, self._cut_off(rewrite))
            if reason is None and self.rules.llm_equality_check:
                verdict = await self.client.complete(self._request(
                    equality_prompt(self.plan.equality_template, question_text(item), instruction),
                    item["id"], "equal"))
                reason = eliminate.judge_says_equal(verdict.text)
            if reason is not None:
                return self._eliminated(item, method, reason, instruction)
            answer = await self.client.complete(self._request(instruction, item["id"], "answer"))
            response = answer.text.strip()
            reason = eliminate.check_response(response, self.rules.min_sorry_words, self._cut_off(answer))
            if reason is not None:
                return self._eliminated(item, method, reason, instruction)
            if self.verifier is not None:
                return await self._verified(item, method, instruction, response)
        except LLMError as exc:
            return self._failed(item, method, exc)
        child = child_record(item, self.round, method, instruction, response)
        return Outcome(item, "kept", method, child=child, evolved_instruction=instruction)

    @staticmethod
    def _failed(item: dict[str, Any], method: str, exc: LLMError) -> Outcome:
        return Outcome(item, "failed", method, f"{type(exc).__name__}: {exc}",
                       cause=getattr(exc, "cause", "error"), permanent=getattr(exc, "permanent", False))

    async def _verified(self, item: dict[str, Any], method: str, instruction: str, response: str) -> Outcome:
        """Run the answer against its own tests and tests written from the instruction alone; a
        failure is answered again with another seed (evol.verify_attempts) before it counts.
        Measure-only (`verify_eliminate: false`) records the verdict and keeps the item."""
        settings = self.plan.verify
        written = await self.client.complete(self._request(
            tests_prompt(settings.tests_template, instruction), item["id"], "tests"))
        tests = written_tests(written.text)
        mutant_seed = _derive(self.base_seed, self.seed, self.round, item["id"], "mutants")
        verdict = await asyncio.to_thread(self.verifier.check, response, tests, mutant_seed)
        reanswers = 0
        while settings.eliminate and not verdict.passed and reanswers < settings.attempts:
            reanswers += 1
            answer = await self.client.complete(self._request(instruction, item["id"], f"answer#{reanswers}"))
            if eliminate.check_response(answer.text.strip(), self.rules.min_sorry_words,
                                        self._cut_off(answer)) is not None:
                continue
            response = answer.text.strip()
            verdict = await asyncio.to_thread(self.verifier.check, response, tests, mutant_seed)
        reason = eliminate.failed_verification(verdict.status, verdict.test, verdict.error)
        if reason is not None and settings.eliminate:
            return Outcome(item, "eliminated", method, str(reason), rule=reason.rule,
                           evolved_instruction=instruction, verdict=verdict, reanswers=reanswers)
        child = child_record(item, self.round, method, instruction, response)
        if verdict.passed:
            child["tests"] = [t.source for t in verdict.tests]
        return Outcome(item, "kept", method, child=child, evolved_instruction=instruction, verdict=verdict,
                       reanswers=reanswers)

    async def run(self, items: list[dict[str, Any]], progress: bool = True) -> RoundResult:
        """All items (the client bounds what is in flight); results in input order, in memory."""
        outcomes: list[Outcome] = []
        done = await self.stream(items, outcomes.append, progress=progress, total=len(items))
        return RoundResult(self.round, outcomes, usage=done.usage, wall_s=done.wall_s, verifying=done.verifying)

    async def stream(self, items: Iterable[dict[str, Any]], emit: Callable[[Outcome], None], *,
                     progress: bool = True, total: int | None = None, window: int = 0) -> StreamedRound:
        """Evolve `items` as they are read, handing each outcome to `emit` in input order.

        At most `window` items (default: 4 x llm.concurrency, at least 256) are between being
        read and being emitted, so memory stays flat however many items there are; a slow
        item holds back only the window behind it, never the requests in flight.

        When the call budget runs out, requests already in flight still finish and are
        cached before the round stops, so nothing that was paid for is thrown away. When
        the endpoint is down (the client's circuit breaker) or misconfigured, the rest is
        cancelled at once: those requests would only fail too.
        """
        if self.plan.verify is not None and self.verifier is None:  # a caller without a sandbox of its own
            self.verifier = Verifier.start(self.plan.verify, workers=2)
            try:
                return await self.stream(items, emit, progress=progress, total=total, window=window)
            finally:
                self.verifier.close()
                self.verifier = None
        start = time.perf_counter()
        pacer = getattr(self.client, "pacer", None)
        window = window or max(256, 4 * (pacer.window.maximum if pacer is not None else 64))
        tally = Tally()
        bar = tqdm(total=total, desc=f"round {self.round}", unit="item", disable=not progress)
        try:
            stopped = await self._windowed(iter(items), window, tally, emit, bar)
        finally:
            bar.close()
        if stopped:
            raise BudgetExhausted(f"{stopped[0]}; round {self.round}: {tally.items} of {total or 'the'} items "
                                  "finished and cached; re-run with a higher llm.max_calls to continue") \
                from stopped[0]
        return StreamedRound(self.round, tally, self.client.usage(), time.perf_counter() - start,
                             self.verifier is not None)

    async def _windowed(self, items: Iterator[dict[str, Any]], window: int, tally: Tally,
                        emit: Callable[[Outcome], None], bar: Any) -> list[BudgetExhausted]:
        """Keep up to `window` items between read and written; emit finished ones in input order."""
        finished: asyncio.Queue[tuple[int, Outcome | BaseException]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        waiting: dict[int, Outcome | None] = {}
        stopped: list[BudgetExhausted] = []
        started = written = 0
        exhausted = False

        async def one(index: int, item: dict[str, Any]) -> None:
            try:
                finished.put_nowait((index, await self.evolve_item(item)))
            except Exception as exc:  # the loop below re-raises it (a budget stop only ends the round)
                finished.put_nowait((index, exc))

        try:
            while True:
                while not exhausted and started - written < window:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    task = asyncio.ensure_future(one(started, item))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    started += 1
                if written == started:
                    return stopped
                index, result = await finished.get()
                bar.update()
                if isinstance(result, BudgetExhausted):
                    stopped.append(result)
                    result = None
                elif isinstance(result, BaseException):
                    raise self._stopped(result, tally, started) from result
                waiting[index] = result
                while written in waiting:
                    outcome = waiting.pop(written)
                    if outcome is not None:
                        tally.add(outcome)
                        emit(outcome)
                    written += 1
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stopped(self, exc: BaseException, tally: Tally, started: int) -> BaseException:
        if not isinstance(exc, EndpointDown):
            return exc
        answered = tally.items - tally.statuses["failed"]
        return EndpointDown(f"round {self.round} stopped: {exc}. Nothing was written; {answered} items were "
                            f"answered and are cached (of {started} started), so a re-run once the endpoint "
                            "is back retries only the rest.")
