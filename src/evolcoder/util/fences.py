"""Markdown code fences in model text: the one parser every wing uses.

Why one: evolution's checks, the dataset fingerprint and eval's post-processing each had
their own regular expression, and they disagreed on tags, on a fence left open by a cut-off
completion and on backticks in the info string. Here a block is found once, with its tag,
its body and whether it was closed; each caller states its policy on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An opening fence: ``` then an info string (CommonMark: without backticks), then the end
# of the line.
_OPEN = re.compile(r"```([^\n`]*)\n")
_OPEN_LOOSE = re.compile(r"```([^\n]*)\n")
_TAG = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced block: `tag` is the info string's first word ('' if none), `body` the text
    up to the closing fence (or to the end of the text when `closed` is False)."""

    tag: str
    info: str
    body: str
    closed: bool


def blocks(text: str, *, backticks_in_info: bool = False) -> list[Block]:
    """Every fenced block, in order; a last block left open (a completion stopped at its
    token limit) runs to the end of the text. `backticks_in_info`: an opening line may hold
    more backticks after the fence (```python```), as evolution's checks have always read it."""
    found = []
    pos = 0
    opening = _OPEN_LOOSE if backticks_in_info else _OPEN
    while (match := opening.search(text, pos)) is not None:
        end = text.find("```", match.end())
        body = text[match.end():] if end < 0 else text[match.end():end]
        tag = _TAG.match(match.group(1)).group(1)  # type: ignore[union-attr]  # always matches
        found.append(Block(tag, match.group(1), body, end >= 0))
        if end < 0:
            break
        pos = end + 3
    return found


def find_block(text: str, tags: tuple[str, ...]) -> Block | None:
    """The first fence opened with one of `tags` as its whole info string (trailing blanks
    aside), wherever it stands, even where a closing fence runs into it; its body runs to
    the next ``` (or to the end of the text, `closed` False)."""
    match = re.search(r"```(%s)[ \t]*\n" % "|".join(map(re.escape, tags)), text)
    if match is None:
        return None
    end = text.find("```", match.end())
    body = text[match.end():] if end < 0 else text[match.end():end]
    return Block(match.group(1), match.group(1), body, end >= 0)


def open_tail(text: str) -> Block | None:
    """The text after the last fence when the fences are odd in number: a block that a
    completion stopped at its token limit left open (None when every fence is paired)."""
    parts = text.split("```")
    if len(parts) % 2 == 1:
        return None
    info, _, body = parts[-1].partition("\n")
    return Block(info.strip(), info, body, False)
