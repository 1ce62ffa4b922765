"""DVC stage `round@<r>`: one evolution round (its plan file; params `llm` for transport only).

Exit codes: 2 bad input or params, 3 call or dollar budget spent, 4 items failed transiently or
the endpoint is down, 5 batches still in flight (`llm.batch_wait: false`). In every failing case
nothing is written, so DVC records no result and the next `dvc repro` runs the round again
(answered requests come from the cache).
"""

from __future__ import annotations

import asyncio

import click
from _common import stage_main

from evolcoder.config import EvolConfig, LLMConfig, load_section
from evolcoder.errors import BudgetExhausted, DataError, RoundIncomplete
from evolcoder.evolution.estimate import budget_warning, rest_of_round
from evolcoder.evolution.outputs import is_marker, write_inactive, write_round
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.evolution.verify import Verifier
from evolcoder.jsonio import read_jsonl
from evolcoder.llm.batch import run_passes
from evolcoder.llm.client import make_client


@click.command()
@click.option("--params", default="params.yaml", show_default=True,
              help="Params file; only transport settings of `llm` are read here (concurrency, cache, ...).")
@click.option("--plan", "plan_path", required=True, help="This round's plan file from the `plan` stage.")
@click.option("--prev", required=True, help="Previous round's pool (the seed file for round 1).")
@click.option("--model-dir", default=None, help="Materialised evolver model (transformers provider).")
@click.option("--out-dir", required=True, help="Directory for pool/kept/outcomes/stats.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@stage_main
def main(params: str, plan_path: str, prev: str, model_dir: str | None, out_dir: str, progress: bool) -> None:
    plan = RoundPlan.from_file(plan_path)
    if not plan.active:
        write_inactive(plan.round, out_dir)
        click.echo(f"round {plan.round}: inactive")
        return
    items = [record for _, record in read_jsonl(prev)]
    if is_marker(items):
        raise DataError(f"{prev}:1: previous round is inactive but round {plan.round} is active")
    transport = load_section(LLMConfig, "llm", params)
    warning = budget_warning(plan, items, plan.evolver.llm_config(transport))  # before the first call
    if warning:
        click.echo(warning, err=True)
    verifier = None
    if plan.verify is not None:  # before any LLM call: a machine that cannot contain code fails first
        evol = load_section(EvolConfig, "evol", params)
        verifier = Verifier.start(plan.verify, evol.verify_workers, evol.verify_unsafe_rlimits_only)
        click.echo(f"round {plan.round}: verifying answers ({plan.verify.mode}) in the sandbox: "
                   f"{verifier.containment}")
    try:
        asyncio.run(_run(plan, transport, items, model_dir, out_dir, progress, verifier))
    except BudgetExhausted as exc:
        if transport.budget_usd is None:
            raise
        if "llm.budget_usd=" not in str(exc):
            raise
        rest = rest_of_round(plan, items, plan.evolver.llm_config(transport))  # from the cache: exact to date
        head = str(exc).split(f"; round {plan.round}: ", 1)[0]  # the round's own hint names llm.max_calls
        raise BudgetExhausted(f"{head} {rest}".strip()) from exc
    finally:
        if verifier is not None:
            verifier.close()


async def _run(plan: RoundPlan, transport: LLMConfig, items: list, model_dir: str | None, out_dir: str,
               progress: bool, verifier: Verifier | None) -> None:
    """The client comes from the plan's evolver; params supply only transport (concurrency, cache...)."""
    llm = plan.evolver.llm_config(transport)
    client = make_client(llm, stage=f"round@{plan.round}",
                         model_path=model_dir if llm.provider == "transformers" else None)
    try:
        runner = RoundRunner(plan, client, verifier)
        result = await run_passes(client, llm, lambda: runner.run(items, progress=progress), progress)
    finally:
        await client.aclose()
    stats = result.stats()
    click.echo(f"round {plan.round}: {stats['kept']} kept, {stats['eliminated']} eliminated, "
               f"{stats['failed']} failed ({stats['failed_permanent']} rejected by the endpoint) of "
               f"{stats['items_in']}; {stats.get('llm_requests', 0)} requests, "
               f"{stats.get('llm_cache_hits', 0)} cache hits, {stats.get('llm_retries', 0)} retries")
    if "verified_fraction" in stats:
        click.echo(f"round {plan.round}: verified {stats['verified_fraction']:.0%} of {stats['verify_items']} "
                   f"answers {stats['verify_by_status']}; mutant kill rate {stats['mutant_kill_rate']}")
    problem = result.incomplete(llm.max_failed_fraction)
    if problem:
        raise RoundIncomplete(problem)
    write_round(result, out_dir)


if __name__ == "__main__":
    main()
