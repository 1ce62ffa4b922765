"""The evolution prompts, verbatim from the WizardCoder paper and WizardLM's scripts."""

from __future__ import annotations

EVOL_TEMPLATE = (
    "Please increase the difficulty of the given programming test question a bit.\n\n"
    "You can increase the difficulty using, but not limited to, the following methods:\n"
    "{method}\n\n"
    "{question}"
)

# The five code-evolution heuristics of WizardCoder (Section 3.1), keyed by params name.
EVOL_METHODS: dict[str, str] = {
    "constraints": "Add new constraints and requirements to the original problem, adding approximately 10 additional words.",
    "rare_requirement": "Replace a commonly used requirement in the programming task with a less common and more specific one.",
    "reasoning_steps": "If the original problem can be solved with only a few logical steps, please add more reasoning steps.",
    "erroneous_code": "Provide a piece of erroneous code as a reference to increase misdirection.",
    "complexity": "Propose higher time or space complexity requirements, but please refrain from doing so frequently.",
}

EQUALITY_TEMPLATE = (
    "Here are two Instructions, do you think they are equal to each other and meet the "
    "following requirements?:\n"
    "1. They have the same constraints and requirments.\n"
    "2. They have the same depth and breath of the inquiry.\n"
    "The First Prompt: {first}\n"
    "The Second Prompt: {second}\n"
    "Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason):"
)


def evol_prompt(method: str, question: str) -> str:
    """The paper's evolution prompt for one heuristic and one instruction."""
    return EVOL_TEMPLATE.format(method=EVOL_METHODS[method], question=question)
