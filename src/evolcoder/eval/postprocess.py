"""Turn raw model text into the code that is executed, exactly as WizardCoder's scripts do.

Evaluation numbers are only comparable with the paper if post-processing matches theirs
(`humaneval_gen.py` + `process_humaneval.py`): keep the text after `### Response:`, keep
the first fenced python block when there is one (an unclosed fence keeps the rest),
then cut at `if __name__ == "__main__":` and at `# Example usage`. Base models are
evaluated the classic Codex way instead: the prompt is continued and cut at the first
stop sequence.

`is_final` tells the generator when further tokens can no longer change the result, so
generation can stop early per sequence without changing any score.
"""

from __future__ import annotations

import re

RESPONSE_MARK = "### Response:"
MAIN_GUARD = 'if __name__ == "__main__":'
EXAMPLE_USAGE = "# Example usage"

# Codex/HumanEval stop sequences for continuing a Python prompt.
COMPLETION_STOPS: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

# Fence tags a chat model may use for each MultiPL-E language.
FENCE_TAGS: dict[str, tuple[str, ...]] = {
    "python": ("python", "py", "Python", "python3"),
    "cpp": ("cpp", "c++", "C++"),
    "java": ("java",),
    "js": ("javascript", "js"),
    "rs": ("rust", "rs"),
    "go": ("go",),
    "sh": ("bash", "sh", "shell"),
}


def after_response(text: str) -> str:
    """The part after the first `### Response:` (the whole text if the marker is absent).

    WizardCoder splits on the *last* marker; a model that goes on to invent a new
    `### Instruction:` turn would then be scored on its invented answer. The first answer
    is the one to the benchmark prompt, and it makes `is_final` exact.
    """
    return text.split(RESPONSE_MARK, 1)[-1]


def _fenced(text: str, language: str) -> str | None:
    """Body of the first ```<language> block; None if no such fence was opened."""
    tags = FENCE_TAGS.get(language, (language,))
    pattern = re.compile(r"```(?:%s)[ \t]*\n" % "|".join(map(re.escape, tags)))
    match = pattern.search(text)
    if match is None:
        return None
    body = text[match.end():]
    end = body.find("```")
    return body if end < 0 else body[:end]


def extract_code(response: str, language: str = "python") -> str:
    """WizardCoder's post-processing of an instruction-following response.

    Deliberate differences, all widening what is recognised: fence tags of other languages
    for MultiPL-E; a fence of any tag when the response has no fence of the expected
    language (their script would keep the prose around it); the first `### Response:`.
    """
    text = after_response(response).replace("\r", "").replace("\t", "    ")
    code = _fenced(text, language)
    if code is None and "```" in text and not any(f"```{t}" in text for t in FENCE_TAGS.get(language, ())):
        code = _any_fence(text)
    if code is None:
        code = text
    if language == "python":
        for marker in (MAIN_GUARD, EXAMPLE_USAGE):
            if marker in code:
                code = code[:code.index(marker)]
    return code.strip("\n").rstrip() + "\n" if code.strip() else ""


def _any_fence(text: str) -> str | None:
    match = re.search(r"```[^\n`]*\n", text)
    if match is None:
        return None
    body = text[match.end():]
    end = body.find("```")
    return body if end < 0 else body[:end]


def truncate_at_stops(completion: str, stops: tuple[str, ...] | list[str] = COMPLETION_STOPS) -> str:
    """Cut a plain continuation at the earliest stop sequence (the stop itself is dropped)."""
    cut = len(completion)
    for stop in stops:
        if stop:
            index = completion.find(stop)
            if 0 <= index < cut:
                cut = index
    return completion[:cut]


def postprocess(raw: str, mode: str, language: str = "python",
                stops: tuple[str, ...] | list[str] = COMPLETION_STOPS, prompt: str = "") -> str:
    """The executable completion for one raw generation in `instruct` or `completion` mode.

    In instruct mode the code is taken from `prompt + raw`, as WizardCoder decodes the whole
    sequence: the prompt's `### Response:` is then the first one.
    """
    if mode == "instruct":
        return extract_code(prompt + raw, language)
    if mode == "completion":
        return truncate_at_stops(raw, stops)
    raise ValueError(f"unknown mode {mode!r} (instruct or completion)")


def is_final(raw: str, mode: str, language: str = "python",
             stops: tuple[str, ...] | list[str] = COMPLETION_STOPS) -> bool:
    """True once more text cannot change `postprocess(raw, ...)`: generation may stop.

    `raw` is the generated text alone; the code is later extracted from prompt + `raw`.
    Instruct mode: a closed fence of the expected language (only the first one is kept).
    Completion mode: any stop sequence has appeared.
    """
    if mode == "completion":
        return any(stop and stop in raw for stop in stops)
    text = raw
    tags = FENCE_TAGS.get(language, (language,))
    match = re.search(r"```(?:%s)[ \t]*\n" % "|".join(map(re.escape, tags)), text)
    return match is not None and "```" in text[match.end():]
