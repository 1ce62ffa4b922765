"""Round plans are content-addressed per slot; elimination rules each give a reason."""

from __future__ import annotations

import difflib
import json
import random
from pathlib import Path

import pytest
import yaml

from evolcoder.evolution import eliminate
from evolcoder.config import EvolConfig, LLMConfig, build
from evolcoder.errors import ConfigError
from evolcoder.evolution.rounds import draw_method
from evolcoder.evolution.plan import RoundPlan, parse_slots, round_plan, write_plans
from evolcoder.records import normalize

REPO = Path(__file__).resolve().parents[1]


def _plans(evol: dict, tmp_path, slots: int = 8) -> dict[int, bytes]:
    cfg = build(EvolConfig, evol, "evol")
    paths = write_plans(cfg, LLMConfig(), tmp_path, slots)
    return {i + 1: p.read_bytes() for i, p in enumerate(paths)}


def test_more_rounds_leave_earlier_plan_files_byte_identical(tmp_path) -> None:
    three = _plans({"rounds": 3}, tmp_path / "a")
    four = _plans({"rounds": 4}, tmp_path / "b")
    assert all(three[r] == four[r] for r in (1, 2, 3, 5, 6, 7, 8))
    assert three[4] != four[4]


def test_per_round_override_changes_only_that_round(tmp_path) -> None:
    base = _plans({"rounds": 4}, tmp_path / "a")
    changed = _plans({"rounds": 4, "per_round": {"r3": {"seed": 7}}}, tmp_path / "b")
    assert [r for r in base if base[r] != changed[r]] == [3]


def test_transport_settings_do_not_enter_plans() -> None:
    evol = EvolConfig()
    a = round_plan(evol, LLMConfig(concurrency=1, timeout_s=5, max_calls=3), 1)
    b = round_plan(evol, LLMConfig(concurrency=64, timeout_s=500), 1)
    assert a == b
    assert round_plan(evol, LLMConfig(temperature=0.2), 1) != a


def test_too_many_rounds_for_the_declared_slots(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"params: evol.rounds: is 9 but dvc.yaml declares only 8"):
        _plans({"rounds": 9}, tmp_path)


def test_plan_carries_the_papers_texts_verbatim(tmp_path) -> None:
    plan = RoundPlan.from_file(write_plans(EvolConfig(), LLMConfig(provider="openai"), tmp_path, 3)[0])
    assert plan.template.startswith("Please increase the difficulty of the given programming test question a bit.")
    assert plan.heuristics["erroneous_code"] == ("Provide a piece of erroneous code as a reference to "
                                                 "increase misdirection.")
    assert sorted(plan.heuristics) == sorted(EvolConfig().methods)
    assert plan.evolver is not None and plan.evolver.prompt_format == "chat"
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"slots": 3, "active": [1, 2, 3]}


def test_reworded_heuristic_for_one_round_changes_only_that_plan(tmp_path) -> None:
    base = _plans({"rounds": 4}, tmp_path / "a")
    reworded = _plans({"rounds": 4, "per_round": {"r3": {"heuristics": {"constraints": "Add one constraint."}}}},
                      tmp_path / "b")
    assert [r for r in base if base[r] != reworded[r]] == [3]
    everywhere = _plans({"rounds": 4, "heuristics": {"constraints": "Add one constraint."}}, tmp_path / "c")
    assert [r for r in base if base[r] != everywhere[r]] == [1, 2, 3, 4]


def test_added_heuristic_needs_a_text_and_a_weight(tmp_path) -> None:
    added = build(EvolConfig, {"heuristics": {"tests": "Ask for unit tests too."},
                               "methods": {"constraints": 1.0, "tests": 2.0}}, "evol")
    plan = round_plan(added, LLMConfig(), 1)
    assert plan.methods == {"constraints": 1.0, "tests": 2.0}
    assert plan.heuristics["tests"] == "Ask for unit tests too."
    unknown = build(EvolConfig, {"methods": {"constraints": 1, "telepathy": 1}}, "evol")
    with pytest.raises(ConfigError, match=r"params: evol.methods.telepathy: no heuristic text"):
        round_plan(unknown, LLMConfig(), 1)
    with pytest.raises(ConfigError, match=r"params: evol.template: must contain \{question\}"):
        round_plan(build(EvolConfig, {"template": "Harder: {method}"}, "evol"), LLMConfig(), 1)


def test_slot_table_is_checked() -> None:
    slots = yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"][0]["slots"]
    args = [a for k, v in slots.items() for a in (f"--{k}", v)]
    assert parse_slots(args) == 10
    with pytest.raises(ConfigError, match="vars.slots.3: is 'data/rounds/r1/pool.jsonl'"):
        parse_slots(["--1", "data/seed/seed.jsonl", "--2", "data/rounds/r1/pool.jsonl",
                     "--3", "data/rounds/r1/pool.jsonl"])
    with pytest.raises(ConfigError, match="without gaps"):
        parse_slots(["--1", "data/seed/seed.jsonl", "--3", "data/rounds/r2/pool.jsonl"])


def test_method_draw_is_keyed_not_ordered() -> None:
    weights = EvolConfig().methods
    draws = {i: draw_method(1, 2, f"id{i}", weights) for i in range(300)}
    assert draws == {i: draw_method(1, 2, f"id{i}", weights) for i in reversed(range(300))}
    assert set(draws.values()) == set(weights)
    assert draws != {i: draw_method(2, 2, f"id{i}", weights) for i in range(300)}
    only = draw_method(1, 1, "x", {"constraints": 0.0, "complexity": 1.0})
    assert only == "complexity"


def test_complexity_is_drawn_less_often_with_lower_weight() -> None:
    weights = {"constraints": 1.0, "complexity": 0.25}
    draws = [draw_method(5, 1, f"item{i}", weights) for i in range(4000)]
    share = draws.count("complexity") / len(draws)
    assert 0.15 < share < 0.25


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        ("Write a function to add two numbers.", "Write a function to add two numbers.", "identical"),
        ("Write a function to add two numbers.", "write a  function to add two numbers!", "similarity"),
        ("Write a function to add two numbers.", "#Rewritten Prompt#: Write a function that adds two "
         "integers and raises TypeError for non-integers.", "copies prompt words"),
        ("Sort a list.", "Rewrite the given prompt so that the list is sorted in place.", "copies prompt words"),
        ("Sort a list.", "   ", "empty instruction"),
        ("Sort a list.", "Sort a list of tuples by the second element, stable, in O(n log n).", None),
    ],
)
def test_instruction_rules(parent: str, child: str, expected: str | None) -> None:
    reason = eliminate.check_instruction(parent, child, threshold=0.95)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in str(reason)


def test_similarity_bounds_never_change_the_verdict() -> None:
    """The length and quick_ratio shortcuts only skip pairs the exact ratio would also keep."""
    rng = random.Random(3)
    words = "sort list of integers and return the largest value in linear time without extra memory".split()
    for _ in range(400):
        parent = " ".join(rng.choices(words, k=rng.randint(3, 14)))
        child = list(parent)
        for _ in range(rng.randint(0, 12)):
            op, at = rng.random(), rng.randrange(len(child) + 1)
            if op < 0.4:
                child.insert(at, rng.choice("abcde "))
            elif op < 0.8 and at < len(child):
                del child[at]
            else:
                child[at:at] = " " + rng.choice(words)
        child_text = "".join(child)
        a, b = normalize(parent), normalize(child_text)
        for threshold in (0.8, 0.9, 0.95):
            exact = a == b or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold
            assert (eliminate.no_information_gain(parent, child_text, threshold) is not None) is exact


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("", "empty"),
        ("...!?", "only punctuation"),
        ("Sure, here it is.", "stop words"),
        ("I'm sorry, but I cannot help with that request.", "sorry"),
        ("Sorry for the delay! " + "def f(x):\n    return x * 2\n" * 30, None),
        ("```python\ndef add(a, b):\n    return a + b\n```", None),
    ],
)
def test_response_rules(response: str, expected: str | None) -> None:
    reason = eliminate.check_response(response, min_sorry_words=80)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in str(reason)


@pytest.mark.parametrize(("verdict", "equal"), [("Equal", True), ("Not Equal", False), ("not equal.", False),
                                                ("They are equal", True), ("Different", False)])
def test_llm_equality_verdict(verdict: str, equal: bool) -> None:
    assert (eliminate.judge_says_equal(verdict) is not None) is equal
