"""merge.match: the evolved-only control arm, matched to the seed set by records or by tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinytokenizer import make_tokenizer_dir

from evolcoder.config import MergeConfig, build
from evolcoder.dataset.control import source_tokenizer, token_counter
from evolcoder.dataset.decontam import build_decontaminator
from evolcoder.dataset.merge import merge
from evolcoder.errors import ConfigError


def _rec(i: int, round_no: int, words: int) -> dict:
    text = f"Task {i} round {round_no}: " + " ".join(f"w{i}x{k}" for k in range(words))
    root = f"s{i % 10}"
    return {"id": f"r{round_no}n{i}", "root_id": root if round_no else f"s{i}", "instruction": text, "input": "",
            "output": "return " + " + ".join(["x"] * words), "round": round_no, "method": None, "parent_id": None}


def _data() -> tuple[list[dict], list[list[dict]]]:
    seed = [_rec(i, 0, 5 + i % 4) for i in range(10)]
    rounds = [[_rec(i, r, 8 + (i * r) % 11) for i in range(10 * r, 10 * r + 12)] for r in (1, 2)]
    return seed, rounds


def _checker():
    return build_decontaminator([], 10, 10, 0.8)


def test_samples_arm_is_evolved_only_and_the_seed_count(tmp_path: Path) -> None:
    seed, rounds = _data()
    result = merge(seed, rounds, _checker(), build(MergeConfig, {"match": "samples"}, "merge"))
    assert len(result.records) == 10 and all(r["round"] >= 1 for r in result.records)
    control = result.metrics["control"]
    assert control["by"] == "samples" and control["seed_records"] == control["train_records"] == 10
    assert control["evolved_records"] == 24 and result.metrics["records_out"] == 10
    again = merge(seed, rounds, _checker(), build(MergeConfig, {"match": "samples"}, "merge"))
    other = merge(seed, rounds, _checker(), build(MergeConfig, {"match": "samples", "match_seed": 5}, "merge"))
    assert again.records == result.records and other.records != result.records


def test_tokens_arm_is_within_one_record_of_the_seed_tokens(tmp_path: Path) -> None:
    count = token_counter(source_tokenizer(str(make_tokenizer_dir(tmp_path / "tok"))))
    seed, rounds = _data()
    result = merge(seed, rounds, _checker(), build(MergeConfig, {"match": "tokens"}, "merge"), count_tokens=count)
    control = result.metrics["control"]
    seed_tokens = sum(count(r) for r in seed)
    train_tokens = sum(count(r) for r in result.records)
    assert control["seed_tokens"] == seed_tokens and control["train_tokens"] == train_tokens
    assert all(r["round"] >= 1 for r in result.records)
    assert 0 <= seed_tokens - train_tokens < max(count(r) for r in rounds[0] + rounds[1])
    assert control["tokens_off"] == seed_tokens - train_tokens


def test_a_shortfall_fails_naming_it() -> None:
    seed, rounds = _data()
    with pytest.raises(ConfigError, match=r"merge.match: samples needs 10 evolved records .* kept only 6 \(4 short\)"):
        merge(seed, [rounds[0][:6]], _checker(), build(MergeConfig, {"match": "samples"}, "merge"))
    with pytest.raises(ConfigError, match="merge.match: must be one of .samples. or .tokens."):
        build(MergeConfig, {"match": "rows"}, "merge")
