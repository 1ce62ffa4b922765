"""How a benchmark problem is put to an instruction-tuned model, one style per harness.

A score is only comparable with a published one if the model saw the same bytes, so each
style rebuilds a harness's own construction (`generate.prompt_style`):

- `wizardcoder`: WizardCoder's scripts (nlpxucan/WizardLM, `WizardCoder/src`). HumanEval
  (`humaneval_gen.py`): two blank lines after the preamble, "Create a Python script for
  this problem:", the prompt with every 4 spaces turned into a tab. MBPP (`mbpp_gen.py`):
  one blank line, the task text then "Test examples:" and every assert of `test_list`.
  MBPP+ (`mbppplus_gen.py` reading `data/mbppplus.json`): two blank lines, no "Create a
  Python script" line, the text and its assert in a python fence.
- `wizardcoder-15b`: the same, but HumanEval with one blank line, as humaneval_gen.py had
  it until 2023-08-26 (commits 9bdbb46, e37a494) and as the published generations of the
  15B model's 59.8 (`data/humaneval.59.8.gen.zip`) show; two blank lines came with the 34B.
- `evalplus`: evalplus's instruction and response prefixes (`codegen.py`,
  `provider/utility.py`), put in the Alpaca turns the project's models are trained on,
  since those models have no chat template for evalplus to render them with.
- `alpaca`: the project's earlier prompt: the training template (one blank line, spaces).

Completion mode never comes here: it continues the bare benchmark prompt.
"""

from __future__ import annotations

from evolcoder.alpaca import alpaca_prompt
from evolcoder.eval.languages import LANGUAGES
from evolcoder.eval.problems import Problem

PROMPT_STYLES: tuple[str, ...] = ("wizardcoder", "wizardcoder-15b", "evalplus", "alpaca")
WIZARDCODER_STYLES = ("wizardcoder", "wizardcoder-15b")

EVAL_INSTRUCTION = "Create a Python script for this problem:\n{prompt}"
PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.")
RESPONSE_MARK = "### Response:"

EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
                        "in a markdown code block:")
EVALPLUS_RESPONSE = ("Below is a Python script with a self-contained function that solves the problem "
                     "and passes corresponding tests:")

# Language names for instruct prompts of MultiPL-E problems.
LANGUAGE_NAMES = {name: lang.display for name, lang in LANGUAGES.items() if name != "python"}

# mbpp_gen.py shows task 493 only its call signature: its asserts are too long.
MBPP_SHORT_EXAMPLES = {"Mbpp/493": ("calculate_polygons(startx, starty, endx, endy, radius)",)}


def eval_prompt(problem_prompt: str) -> str:
    """The `alpaca` style around a Python benchmark prompt (the training template)."""
    return alpaca_prompt(EVAL_INSTRUCTION.format(prompt=problem_prompt))


def to_tabs(text: str) -> str:
    """WizardCoder's indentation: every run of 4 spaces becomes a tab (undone on the output)."""
    return text.replace("    ", "\t")


def _turns(instruction: str, blank_lines: int) -> str:
    gap = "\n" * (blank_lines + 1)
    return f"{PREAMBLE}{gap}### Instruction:\n{instruction}\n\n{RESPONSE_MARK}"


def mbpp_task(problem: Problem) -> str:
    """mbpp_gen.py's problem text: newline, task text, "Test examples:", one assert a line."""
    examples = MBPP_SHORT_EXAMPLES.get(problem.task_id, problem.tests)
    return f"\n{problem.text}\nTest examples:" + "".join(f"\n{test}" for test in examples)


def mbppplus_task(problem: Problem) -> str:
    """The entry of WizardCoder's mbppplus.json: text ending in a period, then its assert fenced."""
    text = problem.text.strip()
    text = text if text.endswith(".") else text + "."
    return f"{text} Your code should satisfy the following assertion:\n```python\n{problem.tests[0]}\n```"


def wizardcoder_prompt(problem: Problem, humaneval_blank_lines: int = 2) -> str:
    """Byte for byte what WizardCoder's generation script gives the model for this problem."""
    if problem.family == "mbpp":
        return _turns(EVAL_INSTRUCTION.format(prompt=to_tabs(mbpp_task(problem))), 1)
    if problem.family == "mbpp+":
        return _turns(to_tabs(mbppplus_task(problem)), 2)
    if problem.language != "python":
        return alpaca_style_prompt(problem)
    return _turns(EVAL_INSTRUCTION.format(prompt=to_tabs(problem.prompt)), humaneval_blank_lines)


def evalplus_prompt(problem: Problem) -> str:
    """evalplus's user turn (prefix + fenced prompt) and the start of its assistant turn."""
    user = f"{EVALPLUS_INSTRUCTION}\n```\n{problem.prompt.strip()}\n```\n"
    return f"{alpaca_prompt(user)}\n{EVALPLUS_RESPONSE}\n```python\n"


def alpaca_style_prompt(problem: Problem) -> str:
    """The training template; for MultiPL-E the instruction names the problem's language."""
    if problem.language == "python":
        return eval_prompt(problem.prompt)
    language = LANGUAGE_NAMES.get(problem.language, problem.language)
    return alpaca_prompt(EVAL_INSTRUCTION.replace("Python", language).format(prompt=problem.prompt))


def instruct_prompt(problem: Problem, style: str) -> str:
    """The instruct-mode model input for `problem` in `style` (one of PROMPT_STYLES)."""
    if style in WIZARDCODER_STYLES:
        return wizardcoder_prompt(problem, 1 if style == "wizardcoder-15b" else 2)
    if style == "evalplus" and problem.language == "python":
        return evalplus_prompt(problem)
    if style in PROMPT_STYLES:
        return alpaca_style_prompt(problem)
    raise ValueError(f"unknown prompt style {style!r} ({', '.join(PROMPT_STYLES)})")


def build_prompt(problem: Problem, mode: str, style: str = "alpaca") -> str:
    """What the model is given: the bare prompt (completion) or the instruct style's."""
    if mode == "completion":
        return problem.prompt
    if mode == "instruct":
        return instruct_prompt(problem, style)
    raise ValueError(f"unknown mode {mode!r} (instruct or completion)")
