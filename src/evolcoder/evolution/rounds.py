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

    def stats(self) -> dict[str, Any]:
        statuses = Counter(o.status for o in self.outcomes)
        reasons = Counter(o.rule or o.reason for o in self.outcomes if o.status == "eliminated")
        kept = self.kept()
        failed = [o for o in self.outcomes if o.status == "failed"]
        return {
            "round": self.round,
            "active": True,
            "items_in": len(self.outcomes),
            "kept": statuses["kept"],
            "eliminated": statuses["eliminated"],
            "failed": statuses["failed"],
            "eliminated_by_reason": dict(sorted(reasons.items())),
            "failed_permanent": sum(o.permanent for o in failed),
            "failed_by_cause": dict(sorted(Counter(o.cause or "error" for o in failed).items())),
            "methods": dict(sorted(Counter(o.method for o in self.outcomes).items())),
            "mean_instruction_words": round(sum(len(c["instruction"].split()) for c in kept) / len(kept), 2)
            if kept else 0.0,
            "mean_pool_instruction_words": round(
                sum(len(p["instruction"].split()) for p in self.pool()) / max(1, len(self.outcomes)), 2),
            "wall_s": round(self.wall_s, 3),
            **{f"llm_{k}": v for k, v in self.usage.items()},
            **self.verify_stats(),
        }

    def verify_stats(self) -> dict[str, Any]:
        """Verification figures, only when the round verified (a round without it keeps its bytes)."""
        verdicts = [o.verdict for o in self.outcomes if o.verdict is not None]
        if not self.verifying:
            return {}
        mutated = [v for v in verdicts if v.mutant_details]
        runnable = sum(v.mutants for v in mutated)
        return {
            "verify_items": len(verdicts),
            "verify_by_status": dict(sorted(Counter(v.status for v in verdicts).items())),
            "verify_reanswers": sum(o.reanswers for o in self.outcomes),
            "verified_fraction": round(sum(v.passed for v in verdicts) / len(verdicts), 4) if verdicts else 0.0,
            "mutant_kill_rate": round(sum(v.killed for v in mutated) / runnable, 4) if runnable else None,
        }

    def incomplete(self, max_failed_fraction: float = 0.0) -> str | None:
        """Why this round must not be written as done, or None when it may be.

        Transient failures beyond `max_failed_fraction` of the items make it incomplete;
        permanent ones (rejected requests) are counted and reported but never retried.
        """
        transient = [o for o in self.outcomes if o.status == "failed" and not o.permanent]
        if not transient or len(transient) <= max_failed_fraction * len(self.outcomes):
            return None
        causes = Counter(o.cause or "error" for o in transient)
        why = ", ".join(f"{cause} {n}" for cause, n in causes.most_common())
        permanent = len([o for o in self.outcomes if o.permanent])
        return (f"round {self.round}: {len(transient)} of {len(self.outcomes)} items failed after retries "
                f"({why}; e.g. {transient[0].reason})"
                + (f", and {permanent} were rejected by the endpoint" if permanent else "")
                + ". Nothing was written. Every answered request is cached, so a re-run (`dvc repro`) "
                f"retries only the {len(transient)} failed items; llm.max_failed_fraction="
                f"{max_failed_fraction} allows no more than {int(max_failed_fraction * len(self.outcomes))}.")


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
        """All items concurrently (the client bounds what is in flight); results in input order.

        When the call budget runs out, requests already in flight still finish and are
        cached before the round stops, so nothing that was paid for is thrown away. When
        the endpoint is down (the client's circuit breaker) or misconfigured, the rest is
        cancelled at once: those requests would only fail too.
        """
        if self.plan.verify is not None and self.verifier is None:  # a caller without a sandbox of its own
            self.verifier = Verifier.start(self.plan.verify, workers=2)
            try:
                return await self.run(items, progress)
            finally:
                self.verifier.close()
                self.verifier = None
        start = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(items)
        stopped: list[BudgetExhausted] = []
        bar = tqdm(total=len(items), desc=f"round {self.round}", unit="item", disable=not progress)

        async def one(index: int, item: dict[str, Any]) -> None:
            try:
                outcomes[index] = await self.evolve_item(item)
            except BudgetExhausted as exc:
                stopped.append(exc)
            bar.update()

        tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except EndpointDown as exc:
            answered = sum(o is not None and o.status != "failed" for o in outcomes)
            raise EndpointDown(f"round {self.round} stopped: {exc}. Nothing was written; {answered} of "
                               f"{len(items)} items were answered and are cached, so a re-run once the "
                               f"endpoint is back retries only the other {len(items) - answered}.") from exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
        if stopped:
            done = sum(o is not None for o in outcomes)
            raise BudgetExhausted(f"{stopped[0]}; round {self.round}: {done} of {len(items)} items finished "
                                  "and cached; re-run with a higher llm.max_calls to continue")
        return RoundResult(self.round, [o for o in outcomes if o is not None],
                           usage=self.client.usage(), wall_s=time.perf_counter() - start,
                           verifying=self.verifier is not None)
