"""The generation journal: finished samples on disk as they finish, so a killed eval resumes.

Evaluating a benchmark takes tens of minutes; the samples file is only written (atomically,
inside the stage's output directory) once every task has its samples. Meanwhile each
finished batch is appended here as JSON lines and fsync'd, under `.evolcoder/journal/`,
outside every DVC output, so DVC never sees a partial result and a re-run after a crash or
`kill -9` regenerates only what is missing.

Every line carries the key of one sample: a hash of the run's fingerprint (model weights,
backend, resolved dtype, batch layout, decoding settings, library versions, all prompts)
with the sample's prompt, stop strings and index. A line whose key the current run does
not ask for is ignored, so a journal left by other settings can never leak into a run. A
torn last line (the kill hit mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evolcoder.jsonio import read_jsonl
from evolcoder.util.hashing import json_sha256


def fingerprint(data: Any) -> str:
    """sha256 of canonical JSON."""
    return json_sha256(data)


def sample_key(run: str, prompt: str, stops: Iterable[str], index: int) -> str:
    return fingerprint({"run": run, "prompt": prompt, "stops": list(stops), "index": index})


class SampleJournal:
    """Append-only JSONL of finished samples for one run fingerprint."""

    def __init__(self, directory: str | Path, run: str, label: str = "") -> None:
        self.run = run
        name = f"{label}-{run[:20]}" if label else run[:20]
        self.path = Path(directory) / f"{name}.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Finished samples by key; empty when there is no journal yet."""
        if not self.path.is_file():
            return {}
        return {rec["key"]: rec for _, rec in read_jsonl(self.path, skip_bad=True)
                if isinstance(rec, dict) and rec.get("run") == self.run and "key" in rec}

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write one batch of samples and fsync it: on disk before the next batch starts."""
        lines = "".join(json.dumps({"run": self.run, **r}, ensure_ascii=False) + "\n" for r in records)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            if handle.tell() and not self._ends_with_newline():
                lines = "\n" + lines  # close a torn line, so it cannot swallow this batch's first
            handle.write(lines.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def remove(self) -> None:
        """Called once the stage's outputs are complete: the journal has done its job."""
        self.path.unlink(missing_ok=True)
