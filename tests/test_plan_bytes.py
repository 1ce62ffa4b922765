"""Plan files keep their bytes across the move to pydantic: DVC must not re-run finished rounds.

tests/fixtures/plans_7179784/ was written by main's commit 7179784 (dataclass config and
plans) from the cases below; today's code must write the very same bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evolcoder.config import EvolConfig, EvolverConfig, build
from evolcoder.evolution.plan import RoundPlan, write_plans

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "plans_7179784"
CASES = {
    "default": ({}, {}),
    "openai": ({"rounds": 2, "verify": "off"}, {"provider": "openai", "model": "gpt-x", "base_url": "http://h/v1",
                                                "temperature": 1.0, "top_p": 1.0, "max_tokens": 2048}),
    "overrides": ({"rounds": 4, "verify": "tests+mutants", "verify_eliminate": True,
                   "heuristics": {"tests": "Ask for unit tests too."},
                   "methods": {"constraints": 1, "tests": 2},
                   "per_round": {"r2": {"seed": 7}, "r3": {"methods": {"tests": 1}, "heuristics": {"tests": "Other."}}}},
                  {"seed": 3, "dtype": "float32"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_files_keep_their_bytes(case: str, tmp_path: Path) -> None:
    evol, evolver = CASES[case]
    write_plans(build(EvolConfig, evol, "evol"), build(EvolverConfig, evolver, "evolver"), tmp_path, 5)
    expected = sorted(p.name for p in (FIXTURES / case).iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    for name in expected:
        assert (tmp_path / name).read_bytes() == (FIXTURES / case / name).read_bytes(), f"{case}/{name}"


def test_old_plan_files_read_back_and_rewrite_identically(tmp_path: Path) -> None:
    for path in sorted(FIXTURES.glob("*/round_*.json")):
        RoundPlan.from_file(path).to_file(tmp_path / "again.json")
        assert (tmp_path / "again.json").read_bytes() == path.read_bytes(), path
