"""The shipped seed set and dev set: well formed, parseable, and free of benchmark overlap.

The dev set decides evol-stop and the seed set is what every round grows from, so a
HumanEval or MBPP problem leaking into either would inflate the numbers that pick the
model. Running the canonical solutions is the sandbox's job (the `evolcoder execute`
tests); here nothing from these files is executed, only parsed.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from evolcoder.config import SeedConfig
from evolcoder.jsonio import read_jsonl
from evolcoder.dataset.merge import ContaminationIndex, ngrams, words
from evolcoder.dataset.seed import load_seed

REPO = Path(__file__).resolve().parents[1]
RESOURCES = Path(str(resources.files("evolcoder") / "resources"))
MIN_RECORDS = 48
NGRAM = 10
FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.S)


def _records(name: str) -> list[dict[str, Any]]:
    return [record for _, record in read_jsonl(RESOURCES / name)]


def _code_of(output: str) -> str:
    """The code in a seed answer: its fenced blocks if it has any, else the whole text."""
    blocks = FENCE.findall(output)
    return "\n".join(blocks) if blocks else output


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def seed() -> list[dict[str, Any]]:
    return _records("seed.jsonl")


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return _records("devset.jsonl")


# --- seed set -------------------------------------------------------------------------


def test_seed_records_have_the_code_alpaca_fields(seed: list[dict[str, Any]]) -> None:
    assert len(seed) >= MIN_RECORDS
    for i, record in enumerate(seed, start=1):
        assert set(record) == {"instruction", "input", "output"}, f"seed.jsonl:{i}: fields {sorted(record)}"
        assert all(isinstance(record[key], str) for key in record), f"seed.jsonl:{i}: non-string field"
        assert record["instruction"].strip() and record["output"].strip(), f"seed.jsonl:{i}: empty field"
    instructions = [_normalized(r["instruction"]) for r in seed]
    assert len(set(instructions)) == len(instructions), "duplicate seed instructions"
    assert sum(bool(r["input"].strip()) for r in seed) >= 8, "too few seeds use the input field"


def test_seed_outputs_are_valid_python(seed: list[dict[str, Any]]) -> None:
    broken = []
    for i, record in enumerate(seed, start=1):
        try:
            ast.parse(_code_of(record["output"]))
        except SyntaxError as exc:
            broken.append(f"seed.jsonl:{i}: {exc.msg} (line {exc.lineno})")
    assert not broken, broken


def test_seed_code_extraction_prefers_fenced_blocks() -> None:
    answer = "Use a comprehension.\n```python\nsquares = [x * x for x in range(3)]\n```\n"
    assert _code_of(answer) == "squares = [x * x for x in range(3)]\n"
    with pytest.raises(SyntaxError):
        ast.parse(_code_of("Use a comprehension: squares = [x * x for x in range(3)]"))


def test_seed_stage_keeps_every_shipped_record(seed: list[dict[str, Any]]) -> None:
    result = load_seed(SeedConfig(path=str(RESOURCES / "seed.jsonl"), n=0))
    assert result.stats == {"read": len(seed), "skipped": 0, "duplicates": 0, "written": len(seed)}


# --- dev set --------------------------------------------------------------------------


def test_devset_records_follow_humaneval_layout(dev: list[dict[str, Any]]) -> None:
    assert len(dev) >= MIN_RECORDS
    assert [r["task_id"] for r in dev] == [f"EvolDev/{i}" for i in range(len(dev))]
    for r in dev:
        where = r["task_id"]
        assert set(r) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"}, where
        assert all(isinstance(value, str) for value in r.values()), where
        assert r["prompt"].rstrip().endswith('"""') and r["prompt"].endswith("\n"), where
        assert f"def {r['entry_point']}(" in r["prompt"], where
        assert f">>> {r['entry_point']}(" in r["prompt"], f"{where}: docstring has no example"
        body = [line for line in r["canonical_solution"].splitlines() if line.strip()]
        assert body and all(line.startswith("    ") for line in body), f"{where}: body not indented"
        assert "def check(candidate):" in r["test"] and "METADATA = {}" in r["test"], where
    entry_points = [r["entry_point"] for r in dev]
    assert len(set(entry_points)) == len(entry_points), "duplicate entry points"


def test_devset_programs_parse_and_define_the_entry_point(dev: list[dict[str, Any]]) -> None:
    for r in dev:
        where = r["task_id"]
        stub = ast.parse(r["prompt"] + "    pass\n")
        last = stub.body[-1]
        assert isinstance(last, ast.FunctionDef) and last.name == r["entry_point"], \
            f"{where}: the prompt must end inside the entry point, so a completion continues it"
        solved = ast.parse(r["prompt"] + r["canonical_solution"])
        function = solved.body[-1]
        assert isinstance(function, ast.FunctionDef) and len(function.body) >= 2, \
            f"{where}: the canonical solution must continue the function body"
        program = r["prompt"] + r["canonical_solution"] + "\n" + r["test"] + "\n" + f"check({r['entry_point']})"
        tree = ast.parse(program)
        check = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check")
        asserts = sum(isinstance(node, ast.Assert) for node in ast.walk(check))
        assert 6 <= asserts <= 12, f"{where}: {asserts} asserts in check()"


# --- contamination --------------------------------------------------------------------


@pytest.fixture(scope="module")
def benchmarks() -> dict[str, Any]:
    data = Path(os.environ.get("EVOLCODER_DATA_DIR") or REPO.parent / "shared" / "data")
    humaneval = data / "humaneval" / "HumanEval.jsonl.gz"
    mbpp = data / "mbpp" / "mbpp.jsonl"
    if not (humaneval.exists() and mbpp.exists()):
        pytest.skip(f"HumanEval/MBPP not found under {data} (set EVOLCODER_DATA_DIR)")
    with gzip.open(humaneval, "rt", encoding="utf-8") as handle:
        he = [json.loads(line) for line in handle if line.strip()]
    mb = [record for _, record in read_jsonl(mbpp)]
    texts = [("humaneval", r["prompt"]) for r in he]
    texts += [("mbpp", "\n".join([r["text"], *r["test_list"], *r["challenge_test_list"]])) for r in mb]
    sanitized = data / "mbpp" / "sanitized-mbpp.json"
    if sanitized.exists():
        texts += [("mbpp", r["prompt"]) for r in json.loads(sanitized.read_text(encoding="utf-8"))]
    assert len(he) == 164 and len(mb) == 974
    index = ContaminationIndex.build(texts, [("humaneval", r["entry_point"]) for r in he], NGRAM)
    return {"index": index, "humaneval": he, "mbpp": mb}


def test_contamination_check_flags_a_shared_ngram(benchmarks: dict[str, Any]) -> None:
    """Guard for the two tests below: the check does fire on a real overlap, and only at n words."""
    index: ContaminationIndex = benchmarks["index"]
    he_words = words(benchmarks["humaneval"][0]["prompt"])
    mbpp_words = words(benchmarks["mbpp"][100]["text"])
    assert index.check("Please solve: " + " ".join(he_words[3:3 + NGRAM])) is not None
    assert index.check("Now " + " ".join(mbpp_words[:NGRAM]) + " quickly") is not None
    assert index.check(" ".join(mbpp_words[:NGRAM - 1]) + " zebra") is None


def test_devset_prompts_share_no_ngram_with_humaneval_or_mbpp(
        dev: list[dict[str, Any]], benchmarks: dict[str, Any]) -> None:
    index: ContaminationIndex = benchmarks["index"]
    hits = [f"{r['task_id']}: {why}" for r in dev if (why := index.check(r["prompt"]))]
    assert not hits, hits


def test_devset_entry_points_are_not_humaneval_names(
        dev: list[dict[str, Any]], benchmarks: dict[str, Any]) -> None:
    taken = {r["entry_point"] for r in benchmarks["humaneval"]}
    assert not taken & {r["entry_point"] for r in dev}


def test_seed_survives_the_merge_decontamination(
        seed: list[dict[str, Any]], benchmarks: dict[str, Any]) -> None:
    """Checked on instruction + input, the text the merge stage checks, so no seed is dropped there."""
    index: ContaminationIndex = benchmarks["index"]
    hits = [f"seed.jsonl:{i}: {why}" for i, r in enumerate(seed, start=1)
            if (why := index.check(f"{r['instruction']}\n{r['input']}"))]
    assert not hits, hits


def test_devset_and_seed_do_not_overlap(seed: list[dict[str, Any]], dev: list[dict[str, Any]]) -> None:
    """Seeds are evolved into training data, so none may share an n-gram or a name with a dev task."""
    dev_grams = set().union(*(ngrams(words(r["prompt"]), NGRAM) for r in dev))
    dev_names = {r["entry_point"] for r in dev}
    for i, r in enumerate(seed, start=1):
        text = f"{r['instruction']}\n{r['input']}\n{r['output']}"
        assert not ngrams(words(text), NGRAM) & dev_grams, f"seed.jsonl:{i} shares a {NGRAM}-gram with the dev set"
        assert not dev_names & set(words(text)), f"seed.jsonl:{i} names a dev entry point"
