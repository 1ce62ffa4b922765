"""The training record and its identity, shared by every part of the pipeline.

A record is one instruction pair: the seed writes them, every round writes its
children, merge writes the training set. Ids are content hashes of the normalised
text, so the same instruction has the same id in every run, and every draw keyed on
it is reproducible.
"""

from __future__ import annotations

import unicodedata
from typing import Any, TypedDict

from evolcoder.util.hashing import json_sha256


class Record(TypedDict, total=False):
    """One instruction pair. Seeds have round 0 and no parent; `root_id` names the seed."""

    id: str
    root_id: str
    parent_id: str | None
    round: int
    method: str | None
    instruction: str
    input: str
    output: str


def normalize(text: str) -> str:
    """Canonical form for ids and dedup: NFC, lower case, collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def record_id(instruction: str, input: str = "") -> str:
    """Stable 16-hex-digit id of an (instruction, input) pair."""
    return json_sha256([normalize(instruction), normalize(input)])[:16]


def child_record(parent: dict[str, Any], round_no: int, method: str, instruction: str,
                 output: str) -> Record:
    """An evolved record: it inherits its seed's `root_id` and names its parent."""
    return Record(id=record_id(instruction), root_id=parent.get("root_id", parent["id"]),
                  parent_id=parent["id"], round=round_no, method=method,
                  instruction=instruction, input="", output=output)


def seed_record(instruction: str, input: str, output: str) -> Record:
    """A seed record: its own root, round 0, no parent and no heuristic."""
    rid = record_id(instruction, input)
    return Record(id=rid, root_id=rid, parent_id=None, round=0, method=None,
                  instruction=instruction, input=input, output=output)
