"""One evolution round as the `round@<r>` stage runs it: plan + pool in, the round's files out.

The stage script only parses its options; this keeps the order that makes a failed round
leave nothing behind: the sandbox is checked before any LLM call (a machine that cannot
contain code fails first), and the outputs are written only when the round is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from evolcoder.config import LLMTransport, SandboxConfig
from evolcoder.errors import BudgetExhausted, DataError, RoundIncomplete
from evolcoder.evolution.estimate import budget_warning, rest_of_round
from evolcoder.evolution.outputs import is_marker, write_inactive, write_round
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.rounds import RoundResult, RoundRunner
from evolcoder.evolution.verify import Verifier
from evolcoder.jsonio import read_jsonl
from evolcoder.llm.batch import run_passes
from evolcoder.llm.client import make_client


def run_round(plan: RoundPlan, prev: str, transport: LLMTransport, sandbox: SandboxConfig, model_dir: str | None,
              out_dir: str, progress: bool = True, echo: Callable[[str], None] = print) -> None:
    """Evolve `prev` (the previous pool) by `plan` and write the round to `out_dir`."""
    if not plan.active:
        write_inactive(plan.round, out_dir)
        echo(f"round {plan.round}: inactive")
        return
    items = [record for _, record in read_jsonl(prev)]
    if is_marker(items):
        raise DataError(f"{prev}:1: previous round is inactive but round {plan.round} is active")
    warning = budget_warning(plan, items, plan.evolver.llm_config(transport))  # before the first call
    if warning:
        echo(warning)
    verifier = None
    if plan.verify is not None:
        verifier = Verifier.start(plan.verify, sandbox.verify_workers, sandbox.unsafe_rlimits_only)
        echo(f"round {plan.round}: verifying answers ({plan.verify.mode}) in the sandbox: {verifier.containment}")
    try:
        result = asyncio.run(_evolve(plan, transport, items, model_dir, progress, verifier))
    except BudgetExhausted as exc:
        raise _dollar_stop(exc, plan, items, transport) from exc
    finally:
        if verifier is not None:
            verifier.close()
    for line in summary(result.stats()):
        echo(line)
    problem = result.incomplete(transport.max_failed_fraction)
    if problem:
        raise RoundIncomplete(problem)
    write_round(result, out_dir)


async def _evolve(plan: RoundPlan, transport: LLMTransport, items: list, model_dir: str | None, progress: bool,
                  verifier: Verifier | None) -> RoundResult:
    """The client comes from the plan's evolver; params supply only transport (concurrency, cache...)."""
    llm = plan.evolver.llm_config(transport)
    client = make_client(llm, stage=f"round@{plan.round}",
                         model_path=model_dir if llm.provider == "transformers" else None)
    try:
        runner = RoundRunner(plan, client, verifier)
        return await run_passes(client, llm, lambda: runner.run(items, progress=progress), progress)
    finally:
        await client.aclose()


def _dollar_stop(exc: BudgetExhausted, plan: RoundPlan, items: list, transport: LLMTransport) -> BudgetExhausted:
    """A dollar-cap stop says what the rest of the round would cost (priced from the cache, so
    exact to date) instead of the call budget's hint; a call-budget stop passes unchanged."""
    if transport.budget_usd is None or "llm.budget_usd=" not in str(exc):
        return exc
    rest = rest_of_round(plan, items, plan.evolver.llm_config(transport))
    head = str(exc).split(f"; round {plan.round}: ", 1)[0]  # the round's own hint names llm.max_calls
    return BudgetExhausted(f"{head} {rest}".strip())


def summary(stats: dict) -> list[str]:
    """What the stage prints: counts, requests, and evol.verify's figures when it ran."""
    n = stats["round"]
    lines = [f"round {n}: {stats['kept']} kept, {stats['eliminated']} eliminated, {stats['failed']} failed "
             f"({stats['failed_permanent']} rejected by the endpoint) of {stats['items_in']}; "
             f"{stats.get('llm_requests', 0)} requests, {stats.get('llm_cache_hits', 0)} cache hits, "
             f"{stats.get('llm_retries', 0)} retries"]
    if "verified_fraction" in stats:
        lines.append(f"round {n}: verified {stats['verified_fraction']:.0%} of {stats['verify_items']} answers "
                     f"{stats['verify_by_status']}; mutant kill rate {stats['mutant_kill_rate']}")
    return lines
