"""A round's outputs on disk: written atomically, read back with checks.

Kept apart from the runner so that `merge` reads rounds without importing the LLM client.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolcoder.errors import DataError
from evolcoder.jsonio import atomic_open, dumps, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:
    from evolcoder.evolution.rounds import Outcome, RoundResult


def write_inactive(round_no: int, out_dir: str | Path) -> None:
    """An inactive slot: one marker line per output, written without reading any input."""
    out = Path(out_dir)
    marker = {"round": round_no, "active": False}
    for name in ("pool.jsonl", "kept.jsonl", "outcomes.jsonl"):
        write_jsonl(out / name, [marker])
    write_json(out / "stats.json", marker)


def write_round(result: RoundResult, out_dir: str | Path) -> None:
    """Write the round's outputs, each atomically, the stats last."""
    out = Path(out_dir)
    write_jsonl(out / "outcomes.jsonl", (o.record() for o in result.outcomes))
    write_jsonl(out / "kept.jsonl", result.kept())
    write_jsonl(out / "pool.jsonl", result.pool())
    write_json(out / "stats.json", result.stats())


@contextlib.contextmanager
def round_writer(out_dir: str | Path) -> Iterator[Callable[[Outcome], None]]:
    """Write a streamed round's outcomes, kept children and pool as each outcome comes.

    Each file goes to a temporary sibling that is renamed into place only when the block
    ends without an error (a failed or incomplete round leaves nothing behind); the caller
    writes stats.json last, after this block.
    """
    out = Path(out_dir)
    with contextlib.ExitStack() as stack:
        outcomes, kept, pool = (stack.enter_context(atomic_open(out / name))
                                for name in ("outcomes.jsonl", "kept.jsonl", "pool.jsonl"))

        def emit(outcome: Outcome) -> None:
            outcomes.write(dumps(outcome.record()) + "\n")
            if outcome.child is not None:
                kept.write(dumps(outcome.child) + "\n")
            pool.write(dumps(outcome.child if outcome.child is not None else outcome.item) + "\n")

        yield emit


def is_marker(records: list[dict[str, Any]]) -> bool:
    return len(records) == 1 and records[0].get("active") is False


def read_round(round_dir: str | Path, round_no: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A finished active round's kept records and stats; an active round that is missing or
    written as inactive fails, so no round can silently drop out of the training set."""
    round_dir = Path(round_dir)
    kept_path, stats_path = round_dir / "kept.jsonl", round_dir / "stats.json"
    if not kept_path.is_file() or not stats_path.is_file():
        raise DataError(f"{round_dir}: round {round_no} is active in the plan but has no outputs; "
                        "add its slot to dvc.yaml `vars: slots` and re-run")
    kept = [record for _, record in read_jsonl(kept_path)]
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    if is_marker(kept) or not stats.get("active", False) or stats.get("round") != round_no:
        raise DataError(f"{stats_path}:1: round {round_no} is active in the plan but its outputs are "
                        "not that round's (stale or inactive); re-run `dvc repro`")
    return kept, stats
