"""DVC stage `round@<r>`: one evolution round (its plan file; params `llm` for transport only).

Exit codes: 2 bad input or params, 3 call budget spent, 4 items failed transiently or the
endpoint is down. In every failing case nothing is written, so DVC records no result and
the next `dvc repro` runs the round again (answered requests come from the cache).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from _common import stage_main

from evolcoder.config import EvolConfig, LLMConfig, load_section
from evolcoder.errors import DataError, RoundIncomplete
from evolcoder.evolution.outputs import round_writer, write_inactive
from evolcoder.evolution.plan import RoundPlan
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.evolution.verify import Verifier
from evolcoder.jsonio import read_jsonl, write_json
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
    total = _count_items(prev, plan.round)
    transport = load_section(LLMConfig, "llm", params)
    verifier = None
    if plan.verify is not None:  # before any LLM call: a machine that cannot contain code fails first
        evol = load_section(EvolConfig, "evol", params)
        verifier = Verifier.start(plan.verify, evol.verify_workers, evol.verify_unsafe_rlimits_only)
        click.echo(f"round {plan.round}: verifying answers ({plan.verify.mode}) in the sandbox: "
                   f"{verifier.containment}")
    try:
        asyncio.run(_run(plan, transport, (prev, total), model_dir, out_dir, progress, verifier))
    finally:
        if verifier is not None:
            verifier.close()


def _count_items(prev: str, round_no: int) -> int:
    """Records in the previous pool (for the progress bar), checking it is an active round's."""
    total = 0
    for lineno, record in read_jsonl(prev):
        if total == 0 and isinstance(record, dict) and record.get("active") is False:
            raise DataError(f"{prev}:{lineno}: previous round is inactive but round {round_no} is active")
        total += 1
    return total


async def _run(plan: RoundPlan, transport: LLMConfig, source: tuple[str, int], model_dir: str | None,
               out_dir: str, progress: bool, verifier: Verifier | None) -> None:
    """The client comes from the plan's evolver; params supply only transport (concurrency, cache...).

    Items stream from the previous pool through the round into the output files (renamed
    into place only if the round is complete), so memory does not grow with the pool.
    """
    llm = plan.evolver.llm_config(transport)
    client = make_client(llm, stage=f"round@{plan.round}",
                         model_path=model_dir if llm.provider == "transformers" else None)
    prev, total = source
    try:
        with round_writer(out_dir) as emit:
            result = await RoundRunner(plan, client, verifier).stream(
                (record for _, record in read_jsonl(prev)), emit, progress=progress, total=total)
            _report(plan, result.stats())
            problem = result.incomplete(llm.max_failed_fraction)
            if problem:
                raise RoundIncomplete(problem)
    finally:
        await client.aclose()
    write_json(Path(out_dir) / "stats.json", result.stats())


def _report(plan: RoundPlan, stats: dict) -> None:
    click.echo(f"round {plan.round}: {stats['kept']} kept, {stats['eliminated']} eliminated, "
               f"{stats['failed']} failed ({stats['failed_permanent']} rejected by the endpoint) of "
               f"{stats['items_in']}; {stats.get('llm_requests', 0)} requests, "
               f"{stats.get('llm_cache_hits', 0)} cache hits, {stats.get('llm_retries', 0)} retries")
    if stats.get("llm_rate_limit_waits") or stats.get("llm_rate_limit_refusals"):
        click.echo(f"round {plan.round}: rate limits: {stats['llm_rate_limit_waits']} requests paced "
                   f"({stats['llm_rate_limit_wait_s']} s waiting), {stats['llm_rate_limit_refusals']} refused "
                   f"(429); concurrency window {stats['llm_window_lowest']}..{stats['llm_window_final']}")
    if "verified_fraction" in stats:
        click.echo(f"round {plan.round}: verified {stats['verified_fraction']:.0%} of {stats['verify_items']} "
                   f"answers {stats['verify_by_status']}; mutant kill rate {stats['mutant_kill_rate']}")


if __name__ == "__main__":
    main()
