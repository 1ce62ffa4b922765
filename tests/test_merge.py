"""Merge: seed first, exact dedup on normalised text, decontamination counted by reason."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from evolcoder.config import MergeConfig
from evolcoder.dataset.merge import ContaminationIndex, load_index, merge

DATA = Path(os.environ.get("EVOLCODER_DATA_DIR", ""))


def _rec(i: str, text: str, round_no: int = 0) -> dict:
    return {"id": i, "instruction": text, "input": "", "output": "x", "round": round_no,
            "method": None if round_no == 0 else "constraints", "parent_id": None}


def test_dedup_keeps_first_and_counts() -> None:
    index = ContaminationIndex.build([], [], 10)
    seed = [_rec("a", "Write a function to reverse a string."), _rec("b", "Sum a list.")]
    rounds = [[_rec("c", "write a  FUNCTION to reverse a string.", 1), _rec("d", "Sum a list, skipping None.", 1)]]
    result = merge(seed, rounds, index)
    assert [r["id"] for r in result.records] == ["a", "b", "d"]
    assert result.metrics["dropped"] == {"duplicate": 1}
    assert result.metrics["by_round"] == {"round_0": 2, "round_1": 1}


@pytest.mark.skipif(not (DATA / "humaneval").is_dir(), reason="EVOLCODER_DATA_DIR has no benchmark copies")
def test_benchmark_prompts_are_caught_by_ngram_and_entry_point() -> None:
    humaneval = [json.loads(line) for line in gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    mbpp = [json.loads(line) for line in open(DATA / "mbpp" / "mbpp.jsonl")]
    leaked_docstring = humaneval[0]["prompt"].split('"""')[1]
    index = load_index(MergeConfig(data_dir=str(DATA)))
    rounds = [[
        _rec("he", f"Implement this: {leaked_docstring}", 1),
        _rec("mb_train", "Please solve: " + mbpp[700]["text"] + " Use Python.", 1),
        _rec("name", "Write separate_paren_groups so that it also handles brackets.", 1),
        _rec("clean", "Write a function that merges overlapping time intervals given as pairs.", 1),
    ]]
    result = merge([], rounds, index)
    reasons = {d["id"]: d["reason"] for d in result.dropped}
    assert reasons["he"] == "10-gram overlap with humaneval"
    assert reasons["mb_train"] == "10-gram overlap with mbpp"
    assert reasons["name"] == "humaneval entry point name"
    assert [r["id"] for r in result.records] == ["clean"]
    assert result.metrics["dropped_total"] == 3
