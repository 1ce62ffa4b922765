"""The evolution prompts: defaults from `templates.yaml`, resolved per round by the plan.

The texts are data, not code, so a user rewords a heuristic, adds a sixth or changes one
for a single round in params; the plan writes the exact texts into each round's plan
file, which is what DVC hashes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")


@functools.cache
def defaults() -> dict[str, Any]:
    """The paper's template, equality-check template and five heuristics."""
    return yaml.safe_load(TEMPLATES_FILE.read_text(encoding="utf-8"))


def evol_prompt(template: str, heuristic: str, question: str) -> str:
    """The evolution prompt for one heuristic text and one instruction."""
    return template.format(method=heuristic, question=question)


def equality_prompt(template: str, first: str, second: str) -> str:
    """WizardLM's optional LLM check that an evolution changed its parent."""
    return template.format(first=first, second=second)


def paper_prompt(method: str, question: str) -> str:
    """The paper's prompt for one of its five heuristics, by name (tests, benchmarks)."""
    texts = defaults()
    return evol_prompt(texts["template"], texts["heuristics"][method], question)


def tests_prompt(template: str, instruction: str) -> str:
    """The test-writing prompt of execution verification: the evolved instruction only."""
    return template.format(instruction=instruction)
