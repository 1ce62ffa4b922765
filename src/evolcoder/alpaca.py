"""The Alpaca prompt that fine-tuning trains on and instruct-mode evaluation prompts with.

It lives on the ground floor so `train/` and `eval/` share one copy without either
importing the other, or evolution: the model is evaluated on exactly the template it
was trained on.
"""

from __future__ import annotations

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The training/evaluation prompt; the `### Input:` variant only when an input exists."""
    if input and input.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT.format(instruction=instruction)
