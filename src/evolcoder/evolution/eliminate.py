"""WizardLM's elimination rules for failed evolutions, each returning a recorded reason.

An evolution fails when the rewrite adds nothing, when the answer is a refusal or
empty, or when the rewriter leaked the prompt's own scaffolding into the instruction.
Each rule is a pure function of text so it can be tested on its own and reported by name.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass

from evolcoder.records import normalize

@dataclass(frozen=True)
class Reason:
    """Why an evolution was eliminated: the rule, counted per round, and this item's detail."""

    rule: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.rule} ({self.detail})" if self.detail else self.rule


LEAKED_PROMPT_WORDS = (
    "#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt", "rewritten prompt",
    "created prompt", "increase the difficulty using", "following methods:",
)

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through to
too under until up very was we were what when where which while who whom why will with you your
yours yourself yourselves ok okay yes sure here's
""".split())

_WORD = re.compile(r"[A-Za-z0-9_']+")


def leaked_prompt_words(instruction: str) -> Reason | None:
    lowered = instruction.lower()
    for phrase in LEAKED_PROMPT_WORDS:
        if phrase in lowered:
            return Reason("copies prompt words", repr(phrase))
    return None


def no_information_gain(parent: str, child: str, threshold: float) -> Reason | None:
    """The evolved instruction equals, or nearly equals, its parent."""
    a, b = normalize(parent), normalize(child)
    if a == b:
        return Reason("no information gain", "identical to parent")
    # Upper bounds first: the length bound (difflib's real_quick_ratio) needs no matcher at
    # all, and rules out most rewrites, which grow the question; quick_ratio rules out most
    # of the rest without the quadratic exact ratio.
    if 2 * min(len(a), len(b)) / (len(a) + len(b)) < threshold:
        return None
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.quick_ratio() < threshold:
        return None
    ratio = matcher.ratio()
    if ratio >= threshold:
        return Reason("no information gain", f"similarity {ratio:.2f} to parent")
    return None


def empty_instruction(instruction: str) -> Reason | None:
    return Reason("empty instruction") if not instruction.strip() else None


def sorry_response(response: str, min_words: int) -> Reason | None:
    """A short answer that apologises is a refusal, not a solution."""
    if "sorry" in response.lower() and len(response.split()) < min_words:
        return Reason(f"response says sorry in under {min_words} words")
    return None


def vacuous_response(response: str) -> Reason | None:
    """Empty, or nothing but punctuation and stop words."""
    stripped = response.strip().strip(string.punctuation + string.whitespace)
    if not stripped:
        return Reason("response empty or only punctuation")
    if all(m.group().lower() in STOP_WORDS for m in _WORD.finditer(response)):  # stops at the first real word
        return Reason("response only punctuation and stop words")
    return None


def truncated(finish_reason: str | None, what: str) -> Reason | None:
    """Cut off at `llm.max_tokens`: a half-written question or answer teaches the model not to finish.

    Not one of WizardLM's rules; small models in a repetition loop end this way, so it
    also keeps degenerate text out of the training set.
    """
    return Reason("truncated at llm.max_tokens", what) if finish_reason == "length" else None


def judge_says_equal(verdict: str) -> Reason | None:
    """Interpret the optional LLM equality check's answer ("Equal" / "Not Equal")."""
    text = verdict.strip().lower()
    if "not equal" in text:
        return None
    if "equal" in text:
        return Reason("no information gain", "LLM judged equal")
    return None


def check_instruction(parent: str, child: str, threshold: float, finish_reason: str | None = None) -> Reason | None:
    """Rules that look at the evolved instruction alone (before paying for an answer).

    `finish_reason` is given only when truncation counts (`evol.drop_truncated`).
    """
    return (empty_instruction(child) or leaked_prompt_words(child)
            or no_information_gain(parent, child, threshold) or truncated(finish_reason, "evolved instruction"))


def check_response(response: str, min_sorry_words: int, finish_reason: str | None = None) -> Reason | None:
    """Rules that look at the generated answer; `finish_reason` as for `check_instruction`."""
    return (vacuous_response(response) or sorry_response(response, min_sorry_words)
            or truncated(finish_reason, "response"))


VERIFY_RULES = {"failed": "verify: tests failed", "timed out": "verify: timed out",
                "no runnable code": "verify: no runnable code", "no tests": "verify: no tests",
                "tests assert nothing": "verify: tests assert nothing"}


def failed_verification(status: str, test: str = "", error: str = "") -> Reason | None:
    """An answer that did not pass execution verification (evol.verify), one rule per verdict;
    the detail names the failing test and its error."""
    if status == "passed":
        return None
    detail = f"{test}: {error}" if test and error else test or error
    return Reason(VERIFY_RULES[status], detail[:300])
