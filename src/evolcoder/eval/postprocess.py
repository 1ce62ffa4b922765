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

from evolcoder.eval.languages import LANGUAGES
from evolcoder.util import fences
from evolcoder.util.stops import cut_at_stops

RESPONSE_MARK = "### Response:"
MAIN_GUARD = 'if __name__ == "__main__":'
EXAMPLE_USAGE = "# Example usage"

# Codex/HumanEval stop sequences for continuing a Python prompt.
COMPLETION_STOPS: tuple[str, ...] = LANGUAGES["python"].stops

# Fence tags a chat model may use for each language.
FENCE_TAGS: dict[str, tuple[str, ...]] = {name: lang.fences for name, lang in LANGUAGES.items()}


def after_response(text: str) -> str:
    """The part after the first `### Response:` (the whole text if the marker is absent).

    WizardCoder splits on the *last* marker; a model that goes on to invent a new
    `### Instruction:` turn would then be scored on its invented answer. The first answer
    is the one to the benchmark prompt, and it makes `is_final` exact.
    """
    return text.split(RESPONSE_MARK, 1)[-1]


def _fenced(text: str, language: str) -> str | None:
    """Body of the first ```<language> block; None if no such fence was opened."""
    block = fences.find_block(text, FENCE_TAGS.get(language, (language,)))
    return None if block is None else block.body


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
    found = fences.blocks(text)
    return found[0].body if found else None


def truncate_at_stops(completion: str, stops: tuple[str, ...] | list[str] = COMPLETION_STOPS) -> str:
    """Cut a plain continuation at the earliest stop sequence (the stop itself is dropped)."""
    return cut_at_stops(completion, stops)[0]


def postprocess(raw: str, mode: str, language: str = "python",
                stops: tuple[str, ...] | list[str] = COMPLETION_STOPS, prompt: str = "",
                style: str = "alpaca", family: str = "humaneval") -> str:
    """The executable completion for one raw generation in `instruct` or `completion` mode.

    In instruct mode the code is taken from `prompt + raw`, as WizardCoder decodes the whole
    sequence, by the extraction of `style` (generate.prompt_style) for the benchmark `family`.
    """
    if mode == "instruct":
        if language == "python" and style.startswith("wizardcoder"):
            return wizardcoder_extract(prompt + raw, family)
        if language == "python" and style == "evalplus":
            return evalplus_extract(raw)
        return extract_code(prompt + raw, language)
    if mode == "completion":
        return truncate_at_stops(raw, stops)
    raise ValueError(f"unknown mode {mode!r} (instruct or completion)")


def is_final(raw: str, mode: str, language: str = "python",
             stops: tuple[str, ...] | list[str] = COMPLETION_STOPS, style: str = "alpaca",
             family: str = "humaneval") -> bool:
    """True once more text cannot change `postprocess(raw, ...)`: generation may stop.

    `raw` is the generated text alone; the code is later extracted from prompt + `raw`.
    Instruct mode: a closed fence of the expected language (only the first one is kept);
    for `wizardcoder` see `wizardcoder_is_final`, for `evalplus` one of its stop strings.
    Completion mode: any stop sequence has appeared.
    """
    if mode == "completion":
        return any(stop and stop in raw for stop in stops)
    if language == "python" and style.startswith("wizardcoder"):
        return wizardcoder_is_final(raw, family)
    if language == "python" and style == "evalplus":
        return any(stop in raw for stop in EVALPLUS_STOPS)
    block = fences.find_block(raw, FENCE_TAGS.get(language, (language,)))
    return block is not None and block.closed


# ---------------------------------------------------------------------------------------
# WizardCoder's own scripts: humaneval_gen.py + process_humaneval.py, mbpp_gen.py +
# process_mbpp.py, mbppplus_gen.py + mbppplus_process_preds.py.

_WIZARDCODER_FENCE_END = {"humaneval": "```", "mbpp": "\n```", "mbpp+": "\n```"}
_WIZARDCODER_CUTS = {"humaneval": (EXAMPLE_USAGE,), "mbpp": (EXAMPLE_USAGE, "# Test examples"),
                     "mbpp+": (EXAMPLE_USAGE, "assert")}


def wizardcoder_response(text: str, family: str) -> str:
    """The answer as their generation scripts save it, tabs back to 4 spaces.

    humaneval_gen.py keeps what lies between the first and a second `### Response:`;
    mbpp_gen.py and mbppplus_gen.py keep what follows the last one.
    """
    parts = text.split(RESPONSE_MARK)
    answer = parts[-1] if family in ("mbpp", "mbpp+") else (parts[1] if len(parts) > 1 else parts[0])
    return answer.replace("\t", "    ")


def wizardcoder_extract(text: str, family: str = "humaneval") -> str:
    """WizardCoder's post-processing of prompt + output, step for step as their scripts do.

    HumanEval and MBPP+ drop carriage returns first (MBPP does not); a python fence keeps
    what follows it up to the closing fence (HumanEval: any ```; MBPP, MBPP+: a newline and
    ```), every ```python removed; then the text is cut at the main guard, at
    `# Example usage`, and for MBPP at `# Test examples`, for MBPP+ at the first `assert`.
    Each cut strips; an answer without any of these is kept as it is.
    """
    family = family if family in _WIZARDCODER_CUTS else "humaneval"
    code = wizardcoder_response(text, family)
    if family != "mbpp":
        code = code.replace("\r", "")
    if "```python" in code:
        code = code[code.index("```python"):].strip().replace("```python", "")
        end = code.find(_WIZARDCODER_FENCE_END[family])
        if end >= 0:
            code = code[:end].strip()
    # Their scripts test for `__name__ == "__main__"` but cut at the full `if ...:` line
    # (and crash when only the former is there); here such a line is left in place.
    if MAIN_GUARD in code:
        code = code[:code.index(MAIN_GUARD)].strip()
    for marker in _WIZARDCODER_CUTS[family]:
        if marker in code:
            code = code[:code.index(marker)].strip()
    return code


def wizardcoder_is_final(raw: str, family: str) -> bool:
    """Exact early stop for WizardCoder's extraction of prompt + `raw`.

    HumanEval: the answer is fixed once a second `### Response:` appears or its python
    fence is closed by a ``` that cannot grow into another ```python. MBPP and MBPP+ take
    the answer after the *last* marker, which a later one could replace: never final.
    """
    if family in ("mbpp", "mbpp+"):
        return False
    answer, marker, _ = raw.partition(RESPONSE_MARK)
    if marker:
        return True
    start = answer.find("```python")
    if start < 0:
        return False
    body = answer[start + len("```python"):]
    index = body.find("```")
    while index >= 0:
        follow = body[index + 3:index + 4]
        if follow and follow != "p" and follow != "`":
            return True
        index = body.find("```", index + 1)
    return False


# ---------------------------------------------------------------------------------------
# evalplus (provider/hf.py, provider/utility.py): the answer starts inside the ```python
# fence its response prefix opened and stops at the first of its stop strings.

EVALPLUS_STOPS: tuple[str, ...] = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(",
                                   "\nprint(", "\n```\n")


def evalplus_extract(raw: str) -> str:
    """evalplus's raw solution: cut at its earliest stop string, tabs to 4 spaces.

    evalplus then runs its tree-sitter sanitizer (imports + the entry point and what it
    calls); that step is not reproduced here.
    """
    return truncate_at_stops(raw, EVALPLUS_STOPS).replace("\t", "    ")
