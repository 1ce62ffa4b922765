"""A round's outputs on disk: written atomically, read back with checks.

Kept apart from the runner so that `merge` reads rounds without importing the LLM client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolcoder.contracts import ROUND_FILES, ROUND_STATS, RoundStats
from evolcoder.errors import DataError
from evolcoder.jsonio import atomic_open, dumps, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from evolcoder.evolution.rounds import Outcome, RoundResult


def write_inactive(round_no: int, out_dir: str | Path) -> None:
    """An inactive slot: one marker line per output, written without reading any input."""
    out = Path(out_dir)
    marker = RoundStats(round=round_no, active=False)
    for name in ROUND_FILES:
        write_jsonl(out / name, [marker.dump()])
    marker.write(out / ROUND_STATS)


def write_round(result: RoundResult, out_dir: str | Path) -> None:
    """Write the round's outputs, each atomically, the stats last."""
    out = Path(out_dir)
    write_jsonl(out / "outcomes.jsonl", (o.record() for o in result.outcomes))
    write_jsonl(out / "kept.jsonl", result.kept())
    write_jsonl(out / "pool.jsonl", result.pool())
    RoundStats.parse(result.stats(), out / ROUND_STATS).write(out / ROUND_STATS)


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


class RoundRecords:
    """A finished active round's kept records, read from disk each time they are iterated.

    The merge reads every round twice (dedup order, then the merge itself) and holds none
    of them; the checks that an active round really finished run once, up front, on the first
    line and the stats, so no round can silently drop out of the training set.
    """

    def __init__(self, round_dir: str | Path, round_no: int) -> None:
        round_dir = Path(round_dir)
        self.path, stats_path = round_dir / "kept.jsonl", round_dir / ROUND_STATS
        if not self.path.is_file() or not stats_path.is_file():
            raise DataError(f"{round_dir}: round {round_no} is active in the plan but has no outputs; "
                            "add its slot to dvc.yaml `vars: slots` and re-run")
        self.stats = RoundStats.read(stats_path)
        first = [record for _, (_, record) in zip(range(2), read_jsonl(self.path))]
        if is_marker(first) or not self.stats.active or self.stats.round != round_no:
            raise DataError(f"{stats_path}:1: round {round_no} is active in the plan but its outputs are "
                            "not that round's (stale or inactive); re-run `dvc repro`")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (record for _, record in read_jsonl(self.path))
