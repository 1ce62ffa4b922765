"""Merge: seed first, exact and near-duplicate removal, decontamination of both fields by reason."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from canaries import KINDS, load_hosts, make_canaries

from evolcoder.config import MergeConfig, build
from evolcoder.dataset.card import render_card, seed_source
from evolcoder.dataset.decontam import build_decontaminator
from evolcoder.dataset.dedup import near_duplicates
from evolcoder.dataset.merge import load_index, merge
from evolcoder.errors import ConfigError
from evolcoder.jsonio import write_jsonl

DATA = Path(os.environ.get("EVOLCODER_DATA_DIR", ""))
needs_data = pytest.mark.skipif(not (DATA / "humaneval").is_dir() or not (DATA / "codealpaca").is_dir(),
                                reason="EVOLCODER_DATA_DIR has no benchmark copies")
RESOURCES = Path(__file__).resolve().parents[1] / "src" / "evolcoder" / "resources"


def _rec(i: str, text: str, round_no: int = 0, output: str = "x") -> dict:
    return {"id": i, "instruction": text, "input": "", "output": output, "round": round_no,
            "method": None if round_no == 0 else "constraints", "parent_id": None}


def _empty_checker():
    return build_decontaminator([], 10, 10, 0.8)


LONG = ("Write a Python function that reads a list of order records, groups them by customer id, "
        "sums the amount of each customer's orders and returns the customers sorted by total spend")


def test_dedup_keeps_first_and_counts() -> None:
    seed = [_rec("a", "Write a function to reverse a string."), _rec("b", LONG)]
    rounds = [[_rec("c", "write a  FUNCTION to reverse a string.", 1),
               _rec("d", LONG + ", highest first.", 1),
               _rec("e", "Sum a list, skipping None.", 1)]]
    result = merge(seed, rounds, _empty_checker(), MergeConfig())
    assert [r["id"] for r in result.records] == ["a", "b", "e"]
    assert result.metrics["dropped"] == {"duplicate": 1, "near_duplicate": 1}
    assert result.metrics["by_round"] == {"round_0": 2, "round_1": 1}
    near = next(d for d in result.dropped if d["reason"] == "near_duplicate")
    assert near["id"] == "d" and near["kept_id"] == "b" and 0.8 <= near["similarity"] < 1.0
    exact = next(d for d in result.dropped if d["reason"] == "duplicate")
    assert exact == {"id": "c", "round": 1, "reason": "duplicate", "kept_id": "a", "similarity": 1.0}


def test_near_duplicate_threshold_is_a_param() -> None:
    records = [_rec("b", LONG), _rec("d", LONG + ", highest first.", 1)]
    assert near_duplicates(records, 0.8, 3) and not near_duplicates(records, 0.95, 3)
    strict = merge(records[:1], [records[1:]], _empty_checker(), MergeConfig(dedup_threshold=0.95))
    assert strict.metrics["records_out"] == 2


def test_near_dedup_is_deterministic(tmp_path: Path) -> None:
    if not (DATA / "codealpaca").is_dir():
        pytest.skip("no Code Alpaca copy")
    records = [_rec(f"s{i}", h["instruction"] + " " + h["input"]) for i, h in enumerate(load_hosts(DATA)[:400])]
    long = [r for r in records if len(r["instruction"].split()) >= 25]
    copies = [_rec(f"c{i}", "  " + r["instruction"].upper() + " Please.", 1) for i, r in enumerate(long)]
    outputs = []
    for attempt in range(2):
        result = merge(records, [copies], _empty_checker(), MergeConfig())
        path = tmp_path / f"train{attempt}.jsonl"
        write_jsonl(path, result.records)
        outputs.append(path.read_bytes())
        assert result.metrics["dropped"]["near_duplicate"] == len(copies) > 20
    assert outputs[0] == outputs[1]


@needs_data
def test_benchmark_prompts_and_answers_are_caught() -> None:
    humaneval = [json.loads(line) for line in gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    mbpp = [json.loads(line) for line in open(DATA / "mbpp" / "mbpp.jsonl")]
    leaked_docstring = humaneval[0]["prompt"].split('"""')[1]
    renamed = (humaneval[12]["prompt"] + humaneval[12]["canonical_solution"]).replace("longest", "pick_one") \
        .replace("strings", "words_in").replace("max_len", "top")
    renamed = renamed.split('"""')[0] + renamed.split('"""')[2]
    index = load_index(MergeConfig(data_dir=str(DATA)))
    rounds = [[
        _rec("he", f"Implement this: {leaked_docstring}", 1),
        _rec("mb_train", "Please solve: " + mbpp[700]["text"] + " Use Python. " + mbpp[700]["test_list"][0], 1),
        _rec("name", "Write separate_paren_groups so that it also handles brackets.", 1),
        _rec("answer", "Return the longest string of a list.", 1, output=f"Sure:\n```python\n{renamed}```"),
        _rec("clean", "Write a function that merges overlapping time intervals given as pairs.", 1),
    ]]
    result = merge([], rounds, index, MergeConfig())
    hits = {d["id"]: {(h["field"], h["detector"], h["benchmark"]) for h in d["hits"]} for d in result.dropped}
    assert ("instruction", "ngram", "humaneval") in hits["he"]
    assert ("instruction", "example", "mbpp-full") in hits["mb_train"]
    assert ("instruction", "entry_point", "humaneval") in hits["name"]
    assert hits["answer"] == {("output", "code", "humaneval")}
    assert [r["id"] for r in result.records] == ["clean"]
    assert result.metrics["dropped"] == {"contaminated": 4}
    assert result.metrics["contamination"]["by_reason"]["output_code"] == 1
    assert set(result.metrics["benchmarks"]) >= {"humaneval", "mbpp-full", "multipl-e-sh", "dev"}


@needs_data
def test_canaries_meet_the_recall_and_false_positive_targets() -> None:
    """A canary set (150 per kind) must be found at >= 95 % and the clean Code Alpaca
    records flagged at <= 1 %, with the default params."""
    checker = load_index(MergeConfig(data_dir=str(DATA)))
    hosts = load_hosts(DATA)
    canaries = make_canaries(DATA, per_kind=150, seed=7, hosts=hosts)
    assert {c.kind for c in canaries} == set(KINDS)
    found = sum(bool(checker.check(c.record)) for c in canaries)
    flagged = sum(bool(checker.check(h)) for h in hosts)
    assert found / len(canaries) >= 0.95, f"recall {found}/{len(canaries)}"
    assert flagged / len(hosts) <= 0.01, f"false positives {flagged}/{len(hosts)}"


@needs_data
def test_shipped_seed_set_survives_every_detector() -> None:
    checker = load_index(MergeConfig(data_dir=str(DATA)))
    seed = [json.loads(line) for line in (RESOURCES / "seed.jsonl").read_text().splitlines()]
    assert [(i, checker.check(r)) for i, r in enumerate(seed) if checker.check(r)] == []


def test_unknown_benchmark_and_bad_threshold_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"merge.decontaminate\[1\]: unknown benchmark 'humaneval\+\+'"):
        build(MergeConfig, {"decontaminate": ["humaneval", "humaneval++"]}, "merge")
    with pytest.raises(ConfigError, match="merge.dedup_threshold: must be > 0"):
        build(MergeConfig, {"dedup_threshold": 0.0}, "merge")


def test_card_names_the_seed_licence() -> None:
    assert seed_source("src/evolcoder/resources/seed.jsonl", "auto")[1] == "Apache-2.0"
    assert seed_source("data/code_alpaca_20k.json", "auto")[1] == "CC BY-NC 4.0"
    assert seed_source("my/seed.jsonl", "auto")[1] == "unknown: set merge.seed_license"
    assert seed_source("my/seed.jsonl", "MIT")[1] == "MIT"
    metrics = {"records_in": 3, "records_out": 2, "by_round": {"round_0": 2}, "dropped": {"near_duplicate": 1},
               "contamination": {"by_reason": {}}, "benchmarks": {"humaneval": "ab" * 32},
               "train_sha256": "cd" * 32}
    card = render_card(metrics, {"seed_license": "auto", "dedup_threshold": 0.8}, "x/codealpaca/a.json", 2)
    assert "license: cc-by-nc-4.0" in card and "| 3 | 2 | 0 | 1 | 0 |" in card and "`dedup_threshold`: 0.8" in card


def test_fingerprint_survives_renaming_layout_and_docstrings_but_not_other_code() -> None:
    from evolcoder.dataset.fingerprint import fingerprint

    original = 'def running_max(xs):\n    """Doc."""\n    best = xs[0]\n    out = []\n    for x in xs:\n' \
               '        best = max(best, x)\n        out.append(best)\n    return out\n'
    disguised = "Try this:\n```python\ndef f(values):  # prefix maxima\n  top=values[0]\n  res=[]\n" \
                "  for v in values:\n    top = max(top,v)\n    res.append(top)\n  return res\n```\nDone."
    other = "def f(values):\n    top = values[0]\n    res = []\n    for v in values:\n        top = min(v, top)\n" \
            "        res.append(v)\n    return res\n"
    a, b, c = fingerprint(original, 10), fingerprint(disguised, 10), fingerprint(other, 10)
    assert a and a == b
    assert len(a & c) / len(a) < MergeConfig().code_containment  # two changed lines: no match


def test_example_index_needs_the_expected_value_for_short_arguments() -> None:
    from evolcoder.dataset.decontam import ExampleIndex

    index = ExampleIndex.build([("mbpp", "Mbpp/1", "lcm", "assert lcm(14,6) == 42\nassert lcm(1234, 98765) == 3\n")])
    assert index.match("print(least_common(14, 6))  # 42") == ("mbpp", "Mbpp/1")
    assert index.match("print(least_common(14, 6))  # 84") is None
    assert index.match("x = g(1234,  98765)") == ("mbpp", "Mbpp/1")
