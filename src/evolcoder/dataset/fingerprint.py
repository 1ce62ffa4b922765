"""A fingerprint of code that survives renaming, reformatting and reworded docstrings.

Contamination rarely arrives verbatim: an evolved answer reproduces a benchmark's
canonical solution under another function name, re-indented, with its docstring
rewritten. So code is reduced to a token stream with layout, comments and docstrings
removed and string literals abstracted; user identifiers are abstracted *within each
k-token window* by back-reference (a name seen earlier in the window becomes "its
distance back", a new one a plain placeholder). That keeps data flow (`a = a + b` differs
from `a = b + c`) while any consistent renaming gives the same windows. Keywords,
builtins, numbers and attribute names stay as written: renaming leaves them alone and
they carry most of what makes one solution differ from another.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import keyword
import re
import tokenize

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}
_KEEP_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
_ID = "\x00"  # prefix marking an abstracted identifier
_FALLBACK = re.compile(
    r"(?P<comment>#[^\n]*)|(?P<string>[rbuf]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|\"[^\"\n]*\"))"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<number>\d[\w.]*)|(?P<op>\*\*=?|//=?|->|[-+*/%&|^<>=!:]=|<<|>>|\S)",
    re.S | re.I)


def code_blocks(text: str) -> list[str]:
    """The fenced blocks of a Markdown answer, or the whole text when it has none."""
    blocks = _FENCE.findall(text)
    return blocks if blocks else [text]


def _is_docstring(tok: str) -> bool:
    body = tok.lstrip("rRbBuUfF")
    return body.startswith(('"""', "'''"))


def _python_tokens(code: str) -> list[str] | None:
    out: list[str] = []
    prev = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in _SKIP or (tok.type == tokenize.ERRORTOKEN and not tok.string.strip()):
                continue
            out.append(_normal(tok.type, tok.string, prev))
            prev = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return [t for t in out if t]


def _normal(kind: int, text: str, prev: str) -> str:
    if kind == tokenize.STRING:
        return "" if _is_docstring(text) else "S"
    if kind == tokenize.NAME and text not in _KEEP_NAMES and prev != ".":
        return _ID + text
    return text


def _fallback_tokens(code: str) -> list[str]:
    """A regex lexer for what `tokenize` rejects (prose around code, unbalanced brackets)."""
    out: list[str] = []
    prev = ""
    for m in _FALLBACK.finditer(code):
        kind = m.lastgroup
        text = m.group()
        if kind == "comment":
            continue
        tok = _normal({"string": tokenize.STRING, "name": tokenize.NAME}.get(kind or "", tokenize.OP), text, prev)
        if tok:
            out.append(tok)
        prev = text
    return out


def code_tokens(text: str) -> list[str]:
    """Normalised tokens of every code block in `text`; identifiers carry the `_ID` prefix."""
    tokens: list[str] = []
    for block in code_blocks(text):
        got = _python_tokens(block)
        tokens.extend(got if got is not None else _fallback_tokens(block))
    return tokens


def kgram_hashes(tokens: list[str], k: int) -> set[int]:
    """Hashes of every k-token window, identifiers renamed by back-reference inside it."""
    hashes: set[int] = set()
    for start in range(max(0, len(tokens) - k + 1)):
        seen: dict[str, int] = {}
        parts = []
        for offset, tok in enumerate(tokens[start:start + k]):
            if tok.startswith(_ID):
                parts.append(f"@{offset - seen[tok]}" if tok in seen else "@")
                seen[tok] = offset
            else:
                parts.append(tok)
        digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
        hashes.add(int.from_bytes(digest, "little"))
    return hashes


def fingerprint(text: str, k: int) -> set[int]:
    """The set of renaming-invariant k-gram hashes of the code in `text`."""
    return kgram_hashes(code_tokens(text), k)
