"""Post-processing of model text into executable code, on real-looking responses."""

from __future__ import annotations

import pytest

from evolcoder.eval.postprocess import extract_code, is_final, postprocess, truncate_at_stops
from evolcoder.eval.prompts import eval_prompt

PROMPT = eval_prompt('def add(a, b):\n    """Return a + b."""\n')

FENCED = '''Here is a Python script that solves the problem:

```python
def add(a, b):
    return a + b
```

This function simply returns the sum of `a` and `b`.'''

FENCED_WITH_MAIN = '''```python
def add(a, b):
    return a + b

if __name__ == "__main__":
    print(add(1, 2))
```'''

UNFENCED_EXAMPLE = '''def add(a, b):
    return a + b

# Example usage
print(add(2, 3))  # Output: 5'''

UNCLOSED = '''Sure! Here's the code:
```python
def add(a, b):
    # add the numbers
    return a + b
'''

PROSE_FIRST_THEN_OTHER_FENCE = '''The function is below.

```
def add(a, b):
    return a + b
```
Hope this helps.'''

TWO_BLOCKS = '''```python
def add(a, b):
    return a + b
```
Test it:
```python
assert add(1, 1) == 2
```'''

TABS_AND_CRLF = "```python\r\ndef add(a, b):\r\n\treturn a + b\r\n```\r\n"

NEW_TURN = '''```python
def add(a, b):
    return a + b
```

### Instruction:
Write a function that subtracts.

### Response:
```python
def sub(a, b):
    return a - b
```'''

EXPECTED = "def add(a, b):\n    return a + b\n"

TABLE = [
    ("fenced with prose around", FENCED, EXPECTED),
    ("main guard inside the fence", FENCED_WITH_MAIN, EXPECTED),
    ("unfenced with trailing example", UNFENCED_EXAMPLE, EXPECTED),
    ("unclosed fence", UNCLOSED, "def add(a, b):\n    # add the numbers\n    return a + b\n"),
    ("untagged fence", PROSE_FIRST_THEN_OTHER_FENCE, EXPECTED),
    ("only the first python block", TWO_BLOCKS, EXPECTED),
    ("tabs and CRLF", TABS_AND_CRLF, EXPECTED),
    ("model invents a new turn", PROMPT + NEW_TURN, EXPECTED),
    ("full text with the prompt", PROMPT + "\n" + FENCED, EXPECTED),
    ("empty answer", "   \n", ""),
]


@pytest.mark.parametrize("label,response,expected", TABLE, ids=[row[0] for row in TABLE])
def test_extract_code_table(label: str, response: str, expected: str) -> None:
    assert extract_code(response) == expected


@pytest.mark.parametrize("label,response,expected", TABLE, ids=[row[0] for row in TABLE])
def test_extracted_code_runs(label: str, response: str, expected: str) -> None:
    """What is extracted is a program: prompt + code defines a working `add`."""
    if not expected:
        pytest.skip("nothing to run")
    scope: dict = {}
    exec(compile('def add(a, b):\n    """Return a + b."""\n' + extract_code(response), "<sample>", "exec"), scope)
    assert scope["add"](2, 3) == 5


def test_other_language_fence() -> None:
    response = "Here you go:\n```cpp\nlong add(long a, long b) {\n    return a + b;\n}\n```\nDone."
    assert extract_code(response, "cpp") == "long add(long a, long b) {\n    return a + b;\n}\n"
    # C++ code keeps lines Python post-processing would cut.
    assert "# Example usage" in extract_code("```cpp\n# Example usage\nint x;\n```", "cpp")


def test_completion_mode_cuts_at_first_stop() -> None:
    continuation = "    return a + b\n\n\ndef test():\n    assert add(1, 2) == 3\n"
    assert postprocess(continuation, "completion") == "    return a + b\n\n"
    assert truncate_at_stops("    x = 1\n# comment\nprint(x)", ["\nprint(", "\n#"]) == "    x = 1"
    assert truncate_at_stops("    return 1", []) == "    return 1"


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        postprocess("x", "chat")


@pytest.mark.parametrize("text,final", [
    ("Here is the code:\n```python\ndef add(a, b):\n", False),
    ("```python\ndef add(a, b):\n    return a + b\n```", True),
    ("```\ndef add(a, b):\n```", False),  # untagged: a python block may still follow
    ("def add(a, b):\n    return a + b\n# Example usage", False),
])
def test_is_final_instruct(text: str, final: bool) -> None:
    assert is_final(text, "instruct") is final


def test_is_final_is_safe() -> None:
    """Whenever is_final says stop, any continuation leaves the extracted code unchanged."""
    tails = ["", "\nmore prose", "\n```python\ndef other():\n    pass\n```", "\n### Response:\nx = 1\n"]
    checked = 0
    for label, response, _ in TABLE:
        response = response.split("### Response:", 1)[-1]
        for cut in range(len(response) + 1):
            prefix = response[:cut]
            if is_final(prefix, "instruct"):
                checked += 1
                for tail in tails:
                    assert extract_code(PROMPT + prefix + tail) == extract_code(PROMPT + prefix), \
                        (label, cut, tail)
    assert checked > 50
    continuation = "    return a + b\n\n\ndef test():\n    pass\n"
    for cut in range(len(continuation) + 1):
        prefix = continuation[:cut]
        if is_final(prefix, "completion"):
            assert postprocess(prefix + "zzz\n#", "completion") == postprocess(prefix, "completion")
