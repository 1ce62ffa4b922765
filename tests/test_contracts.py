"""Metrics files go through the typed models in contracts.py and keep their bytes.

The committed run's metrics (written before the models existed) are read and written back
through each model: same keys, same values, same formatting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolcoder.contracts import (EVAL_METRICS, EVOL_METRICS, MERGE_METRICS, SEED_METRICS, TRAIN_METRICS,
                                 EvalMetrics, EvolMetrics, MergeMetrics, FinetuneRecord, RoundStats, SeedMetrics,
                                 round_dir)
from evolcoder.errors import DataError
from evolcoder.jsonio import write_json

REPO = Path(__file__).resolve().parents[1]
FILES = [(SEED_METRICS, SeedMetrics), (MERGE_METRICS, MergeMetrics), (EVOL_METRICS, EvolMetrics),
         (TRAIN_METRICS, FinetuneRecord)]


@pytest.mark.parametrize(("name", "model"), FILES, ids=[f for f, _ in FILES])
def test_committed_metrics_round_trip_byte_for_byte(name: str, model: type, tmp_path: Path) -> None:
    path = REPO / name
    if not path.is_file():
        pytest.skip(f"{name} not committed here")
    model.read(path).write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("stage", sorted(EVAL_METRICS))
def test_eval_metrics_round_trip(stage: str, tmp_path: Path) -> None:
    path = REPO / EVAL_METRICS[stage]
    if not path.is_file():
        pytest.skip(f"{path} not committed here")
    metrics = EvalMetrics.read_optional(path)
    write_json(tmp_path / "again.json", metrics.dump())
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    assert all(k.startswith("pass@") for scores in metrics.pass_at_k().values() for k in scores)


def test_ints_stay_ints_and_unknown_keys_survive(tmp_path: Path) -> None:
    stats = RoundStats.parse({"round": 2, "active": True, "mean_instruction_words": 3, "llm_dtype": "float32",
                              "verified_fraction": 0.5}, "x")
    stats.write(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text()) == {"round": 2, "active": True, "mean_instruction_words": 3,
                                                              "llm_dtype": "float32", "verified_fraction": 0.5}
    assert (tmp_path / "s.json").read_text().count("3.0") == 0
    assert EvolMetrics.of([stats]).dump()["per_round"]["r2"]["llm_dtype"] == "float32"


def test_a_broken_metrics_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"round": "two", "active": True}))
    with pytest.raises(DataError, match=r"stats.json:1: round: .*RoundStats"):
        RoundStats.read(path)
    path.write_text("{")
    with pytest.raises(DataError, match=r"stats.json:1: invalid JSON"):
        RoundStats.read(path)


def test_round_folder_is_spelled_once() -> None:
    assert round_dir("data/rounds", 3) == Path("data/rounds/r3")
