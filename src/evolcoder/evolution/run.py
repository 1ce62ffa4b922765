"""One evolution round as the `round@<r>` stage runs it: plan + pool in, the round's files out.

The stage script only parses its options; this keeps the order that makes a failed round
leave nothing behind: the sandbox is checked before any LLM call (a machine that cannot
contain code fails first), items stream from the previous pool into temporary output files,
and those are renamed into place only when the round is complete. Memory therefore stays
flat however large the pool is. In batch mode (`llm.mode: batch`) the same streamed pass is
repeated over the cache until no request is missing; a pass that parked requests for a
batch discards its files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from evolcoder.config import LLMConfig, LLMTransport, SandboxConfig
from evolcoder.contracts import ROUND_STATS, RoundStats
from evolcoder.errors import BudgetExhausted, DataError, DollarCapReached, RoundIncomplete
from evolcoder.evolution.estimate import budget_warning, rest_of_round
from evolcoder.evolution.outputs import round_writer, write_inactive
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.rounds import RoundRunner, StreamedRound
from evolcoder.evolution.verify import Verifier
from evolcoder.jsonio import read_jsonl
from evolcoder.llm.batch import run_passes
from evolcoder.llm.client import make_client

Echo = Callable[[str], None]


def run_round(plan: RoundPlan, prev: str, transport: LLMTransport, sandbox: SandboxConfig, model_dir: str | None,
              out_dir: str, progress: bool = True, echo: Echo = print) -> None:
    """Evolve `prev` (the previous pool) by `plan` and write the round to `out_dir`."""
    if not plan.active:
        write_inactive(plan.round, out_dir)
        echo(f"round {plan.round}: inactive")
        return
    total = count_items(prev, plan.round)
    llm = plan.evolver.llm_config(transport)
    if llm.budget_usd is not None:  # before the first call: an upper bound already over the cap is said
        warning = budget_warning(plan, list(_records(prev)), llm)
        if warning:
            echo(warning)
    verifier = None
    if plan.verify is not None:
        verifier = Verifier.start(plan.verify, sandbox.verify_workers, sandbox.unsafe_rlimits_only)
        echo(f"round {plan.round}: verifying answers ({plan.verify.mode}) in the sandbox: {verifier.containment}")
    try:
        result = asyncio.run(_evolve(plan, llm, (prev, total), model_dir, out_dir, progress, verifier, echo))
    except BudgetExhausted as exc:
        raise _dollar_stop(exc, plan, prev, llm) from exc
    finally:
        if verifier is not None:
            verifier.close()
    RoundStats.parse(result.stats(), ROUND_STATS).write(Path(out_dir) / ROUND_STATS)


def count_items(prev: str, round_no: int) -> int:
    """Records in the previous pool (for the progress bar), checking it is an active round's."""
    total = 0
    for lineno, record in read_jsonl(prev):
        if total == 0 and isinstance(record, dict) and record.get("active") is False:
            raise DataError(f"{prev}:{lineno}: previous round is inactive but round {round_no} is active")
        total += 1
    return total


def _records(prev: str) -> Iterator[dict[str, Any]]:
    return (record for _, record in read_jsonl(prev))


class _Parked(Exception):
    """A batch-mode pass parked requests: its files are discarded, its result still returned."""

    def __init__(self, result: StreamedRound) -> None:
        super().__init__("requests parked for a batch")
        self.result = result


async def _evolve(plan: RoundPlan, llm: LLMConfig, source: tuple[str, int], model_dir: str | None, out_dir: str,
                  progress: bool, verifier: Verifier | None, echo: Echo) -> StreamedRound:
    """The client comes from the plan's evolver; params supply only transport (concurrency, cache...)."""
    client = make_client(llm, stage=f"round@{plan.round}",
                         model_path=model_dir if llm.provider == "transformers" else None)
    prev, total = source
    runner = RoundRunner(plan, client, verifier)

    async def one_pass() -> StreamedRound:
        try:
            with round_writer(out_dir) as emit:
                result = await runner.stream(_records(prev), emit, progress=progress, total=total)
                if client.deferring is not None and client.deferring.misses:
                    raise _Parked(result)  # the next pass, after the batches, writes the files
                for line in summary(result.stats()):
                    echo(line)
                problem = result.incomplete(llm.max_failed_fraction)
                if problem:
                    raise RoundIncomplete(problem)
        except _Parked as parked:
            return parked.result
        return result

    try:
        return await run_passes(client, llm, one_pass, progress)
    finally:
        await client.aclose()


def _dollar_stop(exc: BudgetExhausted, plan: RoundPlan, prev: str, llm: LLMConfig) -> BudgetExhausted:
    """A dollar-cap stop says what the rest of the round would cost (priced from the cache, so
    exact to date) instead of the call budget's hint; a call-budget stop passes unchanged."""
    first = exc.__cause__ if isinstance(exc.__cause__, BudgetExhausted) else exc  # the round wraps the first stop
    if not isinstance(first, DollarCapReached):
        return exc
    rest = rest_of_round(plan, list(_records(prev)), llm)
    return BudgetExhausted(f"{first} {rest}".strip())  # not the round's hint, which names llm.max_calls


def summary(stats: dict) -> list[str]:
    """What the stage prints: counts, requests, rate-limit pacing and evol.verify's figures."""
    n = stats["round"]
    lines = [f"round {n}: {stats['kept']} kept, {stats['eliminated']} eliminated, {stats['failed']} failed "
             f"({stats['failed_permanent']} rejected by the endpoint) of {stats['items_in']}; "
             f"{stats.get('llm_requests', 0)} requests, {stats.get('llm_cache_hits', 0)} cache hits, "
             f"{stats.get('llm_retries', 0)} retries"]
    if stats.get("llm_rate_limit_waits") or stats.get("llm_rate_limit_refusals"):
        lines.append(f"round {n}: rate limits: {stats['llm_rate_limit_waits']} requests paced "
                     f"({stats['llm_rate_limit_wait_s']} s waiting), {stats['llm_rate_limit_refusals']} refused "
                     f"(429); concurrency window {stats['llm_window_lowest']}..{stats['llm_window_final']}")
    if "verified_fraction" in stats:
        lines.append(f"round {n}: verified {stats['verified_fraction']:.0%} of {stats['verify_items']} answers "
                     f"{stats['verify_by_status']}; mutant kill rate {stats['mutant_kill_rate']}")
    return lines
