"""How a benchmark problem is put to an instruction-tuned model."""

from __future__ import annotations

from evolcoder.alpaca import alpaca_prompt

EVAL_INSTRUCTION = "Create a Python script for this problem:\n{prompt}"


def eval_prompt(problem_prompt: str) -> str:
    """WizardCoder's HumanEval/MBPP evaluation prompt around a benchmark prompt."""
    return alpaca_prompt(EVAL_INSTRUCTION.format(prompt=problem_prompt))
