"""Lineage-aware near-duplicates: never within a root, strict across roots, exact (prefix filter
finds every pair a brute-force comparison finds), and a merge that streams its inputs."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from evolcoder.config import MergeConfig
from evolcoder.dataset.decontam import build_decontaminator
from evolcoder.dataset.dedup import dedup_text, jaccard, near_duplicates, shingles
from evolcoder.dataset.merge import JsonlSource, merge, merge_to_files

DATA = Path(os.environ.get("EVOLCODER_DATA_DIR", ""))
LONG = ("Write a Python function that reads a list of order records, groups them by customer id, "
        "sums the amount of each customer's orders and returns the customers sorted by total spend")


def _rec(i: str, text: str, round_no: int = 0, root: str | None = None) -> dict:
    return {"id": i, "root_id": root or i, "instruction": text, "input": "", "output": "x", "round": round_no,
            "method": None if round_no == 0 else "constraints", "parent_id": None if round_no == 0 else root}


def _checker():
    return build_decontaminator([], 10, 10, 0.8)


def test_an_evolution_is_never_a_near_duplicate_of_its_ancestors() -> None:
    edited = LONG.replace("customer id", "client id")
    seed = [_rec("a", LONG)]
    rounds = [[_rec("a1", LONG + ". Ignore cancelled orders.", 1, root="a")],
              [_rec("a2", edited + ". Ignore cancelled orders.", 2, root="a")]]
    result = merge(seed, rounds, _checker(), MergeConfig())
    assert [r["id"] for r in result.records] == ["a", "a1", "a2"]
    assert result.metrics["dropped_total"] == 0


def test_across_roots_format_variants_and_one_word_edits_are_dropped() -> None:
    seed = [_rec("a", LONG), _rec("b", LONG.upper().replace(",", ";") + "!!"),
            _rec("c", LONG.replace("total spend", "total revenue")),
            _rec("d", "Write a function to reverse a string."), _rec("e", "Write a function to reverse a list.")]
    result = merge(seed, [], _checker(), MergeConfig())
    dropped = {d["id"]: d for d in result.dropped}
    assert set(dropped) == {"b", "c"}  # short one-word edits are different tasks: d and e both stay
    assert dropped["b"]["kept_id"] == "a" and dropped["b"]["similarity"] == 1.0
    assert dropped["c"]["kept_id"] == "a" and 0.65 <= dropped["c"]["similarity"] < 1.0
    assert result.metrics["near_duplicates"]["threshold"] == 0.65


def _brute_force(records: list[dict], threshold: float) -> list[tuple[int, int, float]]:
    kept: list[tuple[int, set[str], set[str], str]] = []
    pairs = []
    for pos, r in enumerate(records):
        grams, head = shingles(dedup_text(r), 2), shingles(r["instruction"], 2)
        sims = [(min(jaccard(grams, g), jaccard(head, h)), -k, k) for k, g, h, root in kept if root != r["root_id"]]
        best = max(sims, default=None)
        if best is not None and best[0] >= threshold:
            pairs.append((pos, best[2], best[0]))
        else:
            kept.append((pos, grams, head, r["root_id"]))
    return pairs


@pytest.mark.skipif(not (DATA / "codealpaca").is_dir(), reason="EVOLCODER_DATA_DIR has no Code Alpaca copy")
def test_prefix_filter_finds_exactly_what_brute_force_finds() -> None:
    hosts = json.loads((DATA / "codealpaca" / "code_alpaca_2k.json").read_text())[:600]
    rng = random.Random(3)
    records = [_rec(f"s{i}", h["instruction"] + "\n" + h.get("input", "")) for i, h in enumerate(hosts)]
    for i, h in enumerate(hosts[:300]):
        words = h["instruction"].split()
        words[rng.randrange(len(words))] = rng.choice(["new", "quickly", "matrix"])
        root = f"s{i}" if i % 3 == 0 else f"v{i}"  # a third are evolutions of their source
        records.append(_rec(f"v{i}", " ".join(words) + " " + h.get("input", ""), 1, root=root))
    expected = _brute_force(records, 0.65)
    assert len(expected) > 100
    assert near_duplicates(records, 0.65, 2) == expected


def test_merge_to_files_streams_and_matches_the_in_memory_merge(tmp_path: Path) -> None:
    seed = [_rec(f"s{i}", f"Write a function number {i} that adds {i} to every item of a list.") for i in range(30)]
    rounds = [[_rec(f"r{i}", r["instruction"] + " Use recursion.", 1, root=r["id"]) for i, r in enumerate(seed)]
              + [_rec("dup", seed[3]["instruction"].upper(), 1)]]
    paths = []
    for n, recs in enumerate([seed, *rounds]):
        paths.append(tmp_path / f"in{n}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in recs))
    memory = merge(seed, rounds, _checker(), MergeConfig())
    streamed = merge_to_files([JsonlSource(str(p)) for p in paths], _checker(), MergeConfig(),
                              str(tmp_path / "train.jsonl"), str(tmp_path / "dropped.jsonl"))
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert train == memory.records and len(train) == 60
    assert streamed.metrics == memory.metrics and streamed.metrics["dropped"] == {"duplicate": 1}


def test_round_records_refuse_a_stale_or_inactive_round(tmp_path: Path) -> None:
    from evolcoder.errors import DataError
    from evolcoder.evolution.outputs import RoundRecords, write_inactive

    write_inactive(3, tmp_path / "r3")
    with pytest.raises(DataError, match="round 3 is active in the plan but its outputs are not that round's"):
        RoundRecords(tmp_path / "r3", 3)
    with pytest.raises(DataError, match="round 4 is active in the plan but has no outputs"):
        RoundRecords(tmp_path / "r4", 4)
    (tmp_path / "r5").mkdir()
    (tmp_path / "r5" / "kept.jsonl").write_text(json.dumps(_rec("a", LONG, 5, root="s")) + "\n")
    (tmp_path / "r5" / "stats.json").write_text(json.dumps({"round": 5, "active": True}))
    records = RoundRecords(tmp_path / "r5", 5)
    assert [r["id"] for r in records] == [r["id"] for r in records] == ["a"]  # re-iterable: read twice
