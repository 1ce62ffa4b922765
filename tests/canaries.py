"""Canary records: benchmark items perturbed the ways contamination really appears.

Built at test time from the local benchmark copies ($EVOLCODER_DATA_DIR) and Code Alpaca
2k, never committed. Each canary is a Code Alpaca record (the "host") with one benchmark
item planted in it, so everything around the leak reads like ordinary training data:

- renamed: the benchmark prompt as the instruction and its canonical program as the answer,
  every user identifier renamed consistently (function, parameters, locals, examples);
- docstring_reworded: the prompt as the instruction with its prose reworded word by word
  (the doctest examples stay), the host's own answer;
- instruction_rewrite: the task restated as an instruction ("Write a Python function `f(x)`
  that ..."), code and examples gone but the first one, the host's own answer;
- solution_in_answer: the host's own instruction, and an answer that embeds the canonical
  program under new names in a Markdown fence between sentences of prose;
- whitespace: prompt and canonical program re-indented, re-wrapped and re-spaced.

`make_canaries` is deterministic for a given seed.
"""

from __future__ import annotations

import builtins
import io
import json
import keyword
import random
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolcoder.eval.problems import Problem, load_benchmark

KINDS = ("renamed", "docstring_reworded", "instruction_rewrite", "solution_in_answer", "whitespace")
FAMILIES = ("humaneval", "mbpp", "dev")

_RESERVED = set(keyword.kwlist) | set(dir(builtins))
_POOL = ["values", "items", "data", "seq", "arr", "elems", "acc", "idx", "buf", "key", "node", "text",
         "num", "total", "res", "cur", "prev", "tmp", "part", "chunk", "pos", "left", "right", "size",
         "limit", "flag", "word", "chars", "row", "col", "counter", "store", "entry", "parts", "head"]
_VERBS = ["compute", "solve", "get", "find", "calc", "process", "check", "build", "make", "handle"]
_NOUNS = ["result", "answer", "output", "value", "task", "thing", "case", "stuff", "job", "item"]
_SYNONYMS = {
    "return": "give back", "returns": "gives back", "given": "provided", "list": "sequence",
    "number": "value", "numbers": "values", "string": "text", "strings": "texts", "function": "routine",
    "check": "verify", "if": "whether", "find": "determine", "all": "every", "each": "every single",
    "the": "that", "of": "from", "is": "happens to be", "are": "happen to be", "and": "as well as",
    "write": "create", "input": "argument", "element": "entry", "elements": "entries", "count": "tally",
    "first": "initial", "last": "final", "largest": "biggest", "smallest": "tiniest", "sum": "total",
    "integer": "whole number", "integers": "whole numbers", "array": "sequence", "which": "that",
    "two": "a pair of", "contains": "includes", "than": "compared to", "should": "must", "you": "one",
    "have": "possess", "has": "possesses", "only": "solely", "given.": "provided.", "an": "one",
    "positive": "strictly positive", "character": "symbol", "characters": "symbols", "words": "terms",
    "word": "term", "order": "sequence order", "sorted": "ordered", "sort": "order", "to": "so as to",
}


@dataclass(frozen=True)
class Canary:
    kind: str
    family: str
    task_id: str
    record: dict[str, Any]


def _user_names(code: str) -> list[str]:
    """User identifiers of `code` in order of first appearance (no keywords, builtins,
    attributes or imported names)."""
    imported = set()
    for m in re.finditer(r"^\s*(?:from\s+\S+\s+)?import\s+([^\n]+)", code, re.M):
        imported |= set(re.findall(r"\w+", m.group(1)))
    names: list[str] = []
    prev = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if (tok.type == tokenize.NAME and tok.string not in _RESERVED and prev != "."
                    and tok.string not in imported and tok.string not in names):
                names.append(tok.string)
            if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                prev = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return names


def _renaming(code: str, entry_point: str, rng: random.Random) -> dict[str, str]:
    names = _user_names(code)
    taken = set(names) | _RESERVED
    pool = [n for n in _POOL if n not in taken]
    rng.shuffle(pool)
    mapping: dict[str, str] = {}
    for i, name in enumerate(names):
        if name == entry_point:
            mapping[name] = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
        else:
            mapping[name] = pool[i % len(pool)] + ("" if i < len(pool) else str(i))
    return mapping


def _rename(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, sorted(mapping, key=len, reverse=True)))
                         + r")\b")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


def _split_docstring(prompt: str) -> tuple[str, str, str]:
    """(code before, docstring body, code after) of the first triple-quoted string."""
    m = re.search(r'("""|\'\'\')(.*?)\1', prompt, re.S)
    if not m:
        return prompt, "", ""
    return prompt[:m.start(2)], m.group(2), prompt[m.end(2):]


def _prose_and_examples(doc: str) -> tuple[list[str], list[str]]:
    """Docstring lines split into prose and example lines (`>>>`, their outputs, asserts)."""
    prose, examples = [], []
    in_example = False
    for line in doc.strip("\n").splitlines():
        s = line.strip()
        if s.startswith((">>>", "assert")) or re.match(r"^\w+\(.*\)\s*(==|➞|=>|->)", s):
            in_example = True
        elif not s:
            in_example = False
        (examples if in_example else prose).append(line)
    return prose, examples


def _reword(text: str) -> str:
    def swap(m: re.Match[str]) -> str:
        word = m.group()
        new = _SYNONYMS.get(word.lower())
        if new is None:
            return word
        return new.capitalize() if word[0].isupper() else new
    return re.sub(r"(?<![\w])[A-Za-z]+(?![\w])", swap, text)


def _reformat(code: str) -> str:
    """Re-indent to 2 spaces, squeeze `x = y` to `x=y`, add blank lines and trailing blanks."""
    lines = []
    for line in code.splitlines():
        stripped = line.lstrip(" ")
        indent = (len(line) - len(stripped)) // 4 * 2 + (len(line) - len(stripped)) % 4
        body = re.sub(r"(?<=\w) = (?=\w)", "=", stripped)
        body = re.sub(r",(?=\S)", ", ", body)
        lines.append(" " * indent + body + ("  " if body else ""))
        if body.endswith(":") and not body.lstrip().startswith(("'", '"')):
            lines.append("")
    return "\n".join(lines) + "\n"


def _strip_docstring(code: str) -> str:
    before, doc, after = _split_docstring(code)
    if not doc:
        return code
    return before[:-3].rstrip(" ") + after[3:].lstrip("\n")


def _mbpp_parts(problem: Problem) -> tuple[str, str]:
    """MBPP's task text and first test, out of the evaluation prompt."""
    _, doc, _ = _split_docstring(problem.prompt)
    lines = [line for line in doc.strip().splitlines() if line.strip()]
    return " ".join(lines[:-1]), lines[-1]


def _signature(problem: Problem) -> str:
    m = re.search(r"^def\s+(\w+\s*\(.*?\))", problem.reference or problem.prompt, re.M | re.S)
    return " ".join(m.group(1).split()) if m else problem.entry_point


def plant(kind: str, family: str, problem: Problem, host: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One canary record: `problem` planted in the Code Alpaca record `host` as `kind` says."""
    reference = problem.reference or problem.prompt
    record = {"instruction": host["instruction"], "input": host.get("input", ""), "output": host["output"]}
    mapping = _renaming(reference, problem.entry_point, rng)
    if kind == "renamed":
        record.update(instruction="Complete the following Python function.\n\n" + _rename(problem.prompt, mapping),
                      input="", output="```python\n" + _rename(reference, mapping) + "```")
    elif kind == "docstring_reworded":
        if family == "mbpp":
            text, test = _mbpp_parts(problem)
            record.update(instruction=f"{_reword(text)}\nYour code should pass this test: {test}", input="")
        else:
            before, doc, after = _split_docstring(problem.prompt)
            prose, examples = _prose_and_examples(doc)
            reworded = "\n".join(_reword(line) for line in prose) + "\n" + "\n".join(examples)
            record.update(instruction=before + "\n" + reworded + "\n" + after, input="")
    elif kind == "instruction_rewrite":
        if family == "mbpp":
            text, test = _mbpp_parts(problem)
            task = re.sub(r"^\s*write\s+an?\s+(python\s+)?function\s+(to|that)\s+", "", text, flags=re.I)
            example = test
        else:
            _, doc, _ = _split_docstring(problem.prompt)
            prose, examples = _prose_and_examples(doc)
            task = " ".join(" ".join(prose).split())
            example = " ".join(examples[:2]).replace(">>>", "").strip()
        task = task[:1].lower() + task[1:]
        record.update(instruction=f"Write a Python function `{_signature(problem)}` that does the following: "
                                  f"{task.rstrip('.')}. For example: {example}", input="")
    elif kind == "solution_in_answer":
        code = _strip_docstring(_rename(reference, mapping))
        name = mapping.get(problem.entry_point, problem.entry_point)
        record["output"] = (f"Here is one way to do it.\n\n```python\n{code.strip()}\n```\n\n"
                            f"Call `{name}` with your data; it returns the answer directly.")
    elif kind == "whitespace":
        record.update(instruction="Complete the code below:\n" + _rewrap(_reformat(problem.prompt)), input="",
                      output=_reformat(reference))
    else:
        raise ValueError(f"unknown canary kind {kind!r}")
    return record


def _rewrap(code: str) -> str:
    before, doc, after = _split_docstring(code)
    if not doc:
        return code
    prose, examples = _prose_and_examples(doc)
    wrapped = textwrap.fill(" ".join(" ".join(prose).split()), width=50, initial_indent="  ", subsequent_indent="  ")
    return before + "\n" + wrapped + "\n" + "\n".join(examples) + "\n  " + after


def load_hosts(data_dir: Path) -> list[dict[str, Any]]:
    return json.loads((data_dir / "codealpaca" / "code_alpaca_2k.json").read_text(encoding="utf-8"))


def family_problems(data_dir: Path) -> dict[str, list[Problem]]:
    """Python items with canonical programs: HumanEval, MBPP (all 974 tasks), the dev set."""
    return {"humaneval": list(load_benchmark("humaneval", str(data_dir)).problems),
            "mbpp": list(load_benchmark("mbpp-full", str(data_dir)).problems),
            "dev": list(load_benchmark("dev", str(data_dir)).problems)}


def make_canaries(data_dir: Path, per_kind: int, seed: int = 0,
                  hosts: list[dict[str, Any]] | None = None) -> list[Canary]:
    """`per_kind` canaries of every kind, items drawn evenly from the three families."""
    rng = random.Random(seed)
    hosts = hosts if hosts is not None else load_hosts(data_dir)
    families = family_problems(data_dir)
    canaries: list[Canary] = []
    for kind in KINDS:
        for i in range(per_kind):
            family = FAMILIES[i % len(FAMILIES)]
            problem = rng.choice(families[family])
            host = rng.choice(hosts)
            canaries.append(Canary(kind, family, problem.task_id, plant(kind, family, problem, host, rng)))
    return canaries
