"""Split model text into a runnable solution and the tests it carries, by parsing, never running.

Tests come from two places: the asserts and `test_*` functions an answer writes next to its
code, and a separate completion that writes asserts from the evolved instruction alone. Both
are cut out of the module with `ast`, so the solution that is run (and mutated) holds no
tests, and each test is a small program of its own that a harness runs one by one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from evolcoder.util import fences

_PYTHON_TAGS = {"", "python", "py", "python3", "pycon"}


@dataclass(frozen=True)
class Test:
    """One test: a name for reports, its source, and where it came from (`answer` or `llm`)."""

    name: str
    source: str
    origin: str


@dataclass(frozen=True)
class Split:
    """What an answer holds: the solution source (None: no runnable code) and its tests."""

    solution: str | None
    tests: tuple[Test, ...]


def code_blocks(text: str) -> list[str]:
    """Python fenced blocks (a last one left open counts: completions stop at max_tokens), each cut
    to its longest prefix of whole lines that parses; without fences, the whole text if it parses."""
    found = [b.body for b in fences.blocks(text, backticks_in_info=True)
             if b.closed and b.tag.lower() in _PYTHON_TAGS]
    tail = fences.open_tail(text)
    if tail is not None and tail.tag.lower() in _PYTHON_TAGS:
        found.append(tail.body)
    found = [b for b in map(_parsable_prefix, found) if b.strip()]
    if "```" not in text and _parses(text) and text.strip():
        found = [text]  # unfenced: only when all of it is code, else prose would pass for a program
    return found


def _parsable_prefix(source: str) -> str:
    """The source without the trailing lines that keep it from parsing (a cut-off last statement)."""
    lines = source.splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _parses(candidate):
            return candidate
    return ""


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _calls_test(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id.startswith("test"))


def _tests_in(body: list[ast.stmt], origin: str) -> list[Test]:
    tests = []
    for node in body:
        if isinstance(node, ast.Assert):
            tests.append(Test(f"{origin} assert", ast.unparse(node), origin))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            if not node.args.args and not isinstance(node, ast.AsyncFunctionDef):
                tests.append(Test(node.name, f"{ast.unparse(node)}\n{node.name}()", origin))
        elif _is_main_guard(node):
            tests += _tests_in(node.body, origin)
    return tests


def split_module(source: str, origin: str) -> tuple[list[ast.stmt], list[Test]]:
    """Statements that are not tests (main guards and calls of test functions dropped), and the tests."""
    body = ast.parse(source).body
    tests = _tests_in(body, origin)
    test_names = {t.name for t in tests}
    rest = [node for node in body if not isinstance(node, ast.Assert) and not _is_main_guard(node)
            and not _calls_test(node)
            and not (isinstance(node, ast.FunctionDef) and node.name in test_names)]
    return rest, tests


def split_answer(answer: str) -> Split:
    """The answer's solution (all non-test code of its blocks) and the tests written beside it."""
    statements: list[ast.stmt] = []
    tests: list[Test] = []
    for block in code_blocks(answer):
        rest, found = split_module(block, "answer")
        statements += rest
        tests += found
    code = ast.unparse(ast.Module(body=statements, type_ignores=[])) if statements else None
    return Split(code if code and _compiles(code) else None, _numbered(tests, "answer"))


def written_tests(text: str) -> tuple[Test, ...]:
    """Tests from the test-writing completion: its asserts and test functions, each prefixed with
    the imports it wrote; any solution it wrote anyway is dropped (tests come from the task only)."""
    tests: list[Test] = []
    for block in code_blocks(text):
        rest, found = split_module(block, "llm")
        imports = "\n".join(ast.unparse(n) for n in rest if isinstance(n, (ast.Import, ast.ImportFrom)))
        tests += [Test(t.name, f"{imports}\n{t.source}" if imports else t.source, "llm") for t in found]
    return _numbered(tests, "llm")


def _numbered(tests: list[Test], origin: str) -> tuple[Test, ...]:
    """Asserts named by their place among all asserts (`answer assert 2`), test functions by name."""
    out, n = [], 0
    for t in tests:
        if t.name.startswith(f"{origin} assert"):
            n += 1
            t = Test(f"{origin} assert {n}", t.source, t.origin)
        out.append(t)
    return tuple(out)


def _compiles(code: str) -> bool:
    try:
        compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError):
        return False
    return True
