"""`evolcoder prompts` gives the model exactly the bytes WizardCoder's scripts give it.

The expected prompts are rebuilt here from the raw benchmark files, following the
construction in nlpxucan/WizardLM `WizardCoder/src` (humaneval_gen.py, mbpp_gen.py,
mbppplus_gen.py with data/mbppplus.json), independently of `evolcoder.eval.prompts`.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from evolcoder.cli import main
from evolcoder.eval.postprocess import is_final, postprocess
from evolcoder.eval.problems import load_benchmark

DATA = Path(os.environ["EVOLCODER_DATA_DIR"])
HEAD = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def _run_prompts(tmp_path: Path, benchmark: str, mode: str, style: str | None = None) -> dict[str, str]:
    params = tmp_path / "params.yaml"
    params.write_text(f"generate:\n  prompt_style: {style or 'wizardcoder'}\n")
    out = tmp_path / f"{benchmark}-{mode}.jsonl"
    result = CliRunner().invoke(main, ["prompts", "--benchmark", benchmark, "--mode", mode,
                                       "--params", str(params), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {row["task_id"]: row["prompt"] for row in rows}


def _humaneval_rows() -> list[dict]:
    with gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_humaneval_prompts_match_humaneval_gen(tmp_path: Path) -> None:
    """Preamble, two empty lines, the instruction, the problem indented with tabs."""
    got = _run_prompts(tmp_path, "humaneval", "instruct")
    rows = _humaneval_rows()
    assert len(got) == len(rows) == 164
    for row in rows:
        tabbed = row["prompt"].replace(" " * 4, "\t")
        expected = (HEAD + "\n" + "\n" + "\n" + "### Instruction:\n" + "Create a Python script for this problem:\n"
                    + tabbed + "\n" + "\n" + "### Response:")
        assert got[row["task_id"]] == expected, row["task_id"]


def test_wizardcoder_15b_humaneval_has_one_empty_line(tmp_path: Path) -> None:
    """The June 2023 humaneval_gen.py (the 15B's published generations) had one empty line."""
    got = _run_prompts(tmp_path, "humaneval", "instruct", "wizardcoder-15b")
    first = _humaneval_rows()[0]
    assert got["HumanEval/0"] == (f"{HEAD}\n\n### Instruction:\nCreate a Python script for this problem:\n"
                                  f"{first['prompt'].replace('    ', chr(9))}\n\n### Response:")


def test_mbpp_prompts_match_mbpp_gen(tmp_path: Path) -> None:
    """Test split 11-510: text, "Test examples:", every assert of test_list; one empty line."""
    got = _run_prompts(tmp_path, "mbpp", "instruct")
    rows = [json.loads(line) for line in (DATA / "mbpp" / "mbpp.jsonl").read_text(encoding="utf-8").splitlines()]
    test_split = [r for r in rows if 11 <= r["task_id"] <= 510]
    assert len(got) == len(test_split) == 500
    for row in test_split:
        examples = row["test_list"]
        if row["task_id"] == 493:  # the script shows only the call for this one
            examples = ["calculate_polygons(startx, starty, endx, endy, radius)"]
        problem = "\n" + row["text"] + "\n" + "Test examples:" + "".join("\n" + e for e in examples)
        expected = (HEAD + "\n\n### Instruction:\nCreate a Python script for this problem:\n"
                    + problem.replace(" " * 4, "\t") + "\n\n### Response:")
        assert got[f"Mbpp/{row['task_id']}"] == expected, row["task_id"]


def test_mbppplus_prompts_follow_mbppplus_json(tmp_path: Path) -> None:
    """mbppplus.json's entries: text ending in '.', the assert fenced; two empty lines, no
    "Create a Python script" line. Built here from the v0.2.0 docstring prompts."""
    got = _run_prompts(tmp_path, "mbpp+", "instruct")
    with gzip.open(DATA / "mbppplus" / "MbppPlus-v0.2.0.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    assert len(got) == len(rows) == 378
    for row in rows:
        lines = row["prompt"].strip().removeprefix('"""').removesuffix('"""').strip("\n").split("\n")
        text, assertion = "\n".join(lines[:-1]).strip(), lines[-1]
        if not text.endswith("."):
            text += "."
        question = f"{text} Your code should satisfy the following assertion:\n```python\n{assertion}\n```"
        expected = HEAD + "\n\n\n### Instruction:\n" + question.replace("    ", "\t") + "\n\n### Response:"
        assert got[row["task_id"]] == expected, row["task_id"]


def test_completion_mode_is_the_bare_prompt(tmp_path: Path) -> None:
    got = _run_prompts(tmp_path, "humaneval", "completion")
    assert got == {row["task_id"]: row["prompt"] for row in _humaneval_rows()}


def test_evalplus_style_uses_its_prefixes(tmp_path: Path) -> None:
    got = _run_prompts(tmp_path, "humaneval", "instruct", "evalplus")["HumanEval/2"]
    stub = _humaneval_rows()[2]["prompt"].strip()
    assert got == (f"{HEAD}\n\n### Instruction:\nPlease provide a self-contained Python script that solves "
                   f"the following problem in a markdown code block:\n```\n{stub}\n```\n\n\n### Response:\n"
                   "Below is a Python script with a self-contained function that solves the problem and "
                   "passes corresponding tests:\n```python\n")


# --- post-processing: realistic answers, as a tab-indented model writes them -------------

HE_ANSWER = ("Here's the Python script for the problem:\r\n\r\n```python\r\nfrom typing import List\r\n\r\n"
             "def below_zero(operations: List[int]) -> bool:\r\n\tbalance = 0\r\n\tfor op in operations:\r\n"
             "\t\tbalance += op\r\n\t\tif balance < 0:\r\n\t\t\treturn True\r\n\treturn False\r\n\r\n"
             "# Example usage\r\nprint(below_zero([1, 2, -4, 5]))\r\n```\r\n\r\nThis works by...")
HE_CODE = ("from typing import List\n\ndef below_zero(operations: List[int]) -> bool:\n    balance = 0\n"
           "    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n"
           "    return False")


def _instruct(problem_id: str, benchmark: str, raw: str, style: str = "wizardcoder") -> str:
    from evolcoder.eval.prompts import build_prompt

    problem = load_benchmark(benchmark).by_id[problem_id]
    prompt = build_prompt(problem, "instruct", style)
    return postprocess(raw, "instruct", prompt=prompt, style=style, family=problem.family)


def test_humaneval_answer_round_trip_and_run() -> None:
    """Tabs back to spaces, CRs dropped, the fenced code cut at `# Example usage`, and it passes."""
    code = _instruct("HumanEval/3", "humaneval", HE_ANSWER)
    assert code == HE_CODE
    problem = load_benchmark("humaneval").by_id["HumanEval/3"]
    scope: dict = {}
    exec(compile(problem.program(code) + "\n" + problem.test, "<sample>", "exec"), scope)  # noqa: S102


def test_humaneval_answer_stops_at_a_second_response_marker() -> None:
    raw = " \treturn 1\n\n### Instruction:\nmore\n\n### Response:\n```python\ndef other():\n\tpass\n```"
    assert _instruct("HumanEval/3", "humaneval", raw) == "     return 1\n\n### Instruction:\nmore\n\n"


def test_mbpp_answer_keeps_carriage_returns_and_cuts_test_examples() -> None:
    raw = ("\n```python\ndef remove_Occ(s,ch):\r\n\treturn s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]"
           "\r\n\r\n# Test examples\r\nassert remove_Occ('hello','l') == 'heo'\n```\nDone.")
    assert _instruct("Mbpp/11", "mbpp", raw) == \
        "def remove_Occ(s,ch):\r\n    return s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]"


def test_mbpp_answer_after_the_last_marker() -> None:
    raw = "```python\nold\n```\n### Response:\n```python\ndef f(x):\n\treturn x\n```"
    assert _instruct("Mbpp/11", "mbpp", raw) == "def f(x):\n    return x"


def test_mbppplus_answer_is_cut_at_the_first_assert() -> None:
    raw = ("Sure.\n```python\ndef similar_elements(a, b):\n\treturn tuple(set(a) & set(b))\n\n"
           "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n```")
    assert _instruct("Mbpp/2", "mbpp+", raw) == "def similar_elements(a, b):\n    return tuple(set(a) & set(b))"


def test_unfenced_answer_is_kept_as_written() -> None:
    """Without a fence or marker their scripts keep the answer verbatim (tabs undone)."""
    assert _instruct("HumanEval/3", "humaneval", "\n\tfor x in y:\n\t\tpass\n") == "\n    for x in y:\n        pass\n"


def test_evalplus_answer_stops_at_the_closing_fence() -> None:
    raw = "def f():\n\treturn 1\n```\n\nExplanation"
    assert _instruct("HumanEval/3", "humaneval", raw, "evalplus") == "def f():\n    return 1"


@pytest.mark.parametrize("benchmark,task,raw", [
    ("humaneval", "HumanEval/3", HE_ANSWER),
    ("humaneval", "HumanEval/3", "```python\ndef f():\n\treturn 1\n```python\nx\n```\n### Response: y"),
    ("mbpp", "Mbpp/11", "```python\ndef f():\n\treturn 1\n```\n"),
])
def test_early_stop_never_changes_the_code(benchmark: str, task: str, raw: str) -> None:
    """Wherever is_final says stop, any continuation extracts the same code."""
    problem = load_benchmark(benchmark).by_id[task]
    for cut in range(len(raw) + 1):
        prefix = raw[:cut]
        if is_final(prefix, "instruct", style="wizardcoder", family=problem.family):
            for tail in ("", "python\n", "\n### Response:\n```python\nzzz\n```", "`"):
                assert _instruct(task, benchmark, prefix + tail) == _instruct(task, benchmark, prefix), (cut, tail)


def test_paper_presets_carry_the_readme_protocols(tmp_path: Path) -> None:
    """Greedy preset, then the sampled one on top: both merge into params.yaml and validate."""
    import shutil

    import yaml

    repo = Path(__file__).resolve().parents[1]
    params = tmp_path / "params.yaml"
    shutil.copy(repo / "params.yaml", params)
    for preset in ("paper.yaml", "paper-sampled.yaml"):
        result = CliRunner().invoke(main, ["preset", str(repo / "configs/presets" / preset), "--params", str(params)])
        assert result.exit_code == 0, result.output
        merged = yaml.safe_load(params.read_text())["generate"]
        if preset == "paper.yaml":
            assert (merged["mode"], merged["prompt_style"], merged["temperature"], merged["n"]) == \
                ("instruct", "wizardcoder", 0.0, 1)
    assert (merged["prompt_style"], merged["n"], merged["temperature"], merged["top_p"]) == \
        ("wizardcoder-15b", 20, 0.2, 0.95)
    text = (repo / "configs/presets/paper.yaml").read_text() + (repo / "configs/presets/paper-sampled.yaml").read_text()
    assert all(number in text for number in ("59.8", "73.2", "57.3", "51.8"))
