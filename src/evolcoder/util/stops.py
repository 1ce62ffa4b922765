"""Cutting generated text at stop strings: one rule for a server's stops and ours.

Why one: in-process generation and post-processing each cut at the earliest stop string,
with separate code; a sample must score the same whichever cut it. An empty stop string
stops nothing (it would otherwise cut every text to nothing).
"""

from __future__ import annotations

from collections.abc import Iterable


def cut_at_stops(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string (the stop itself dropped), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
