"""EvalPlus output comparison, run by the worker on plain data as the sample's outputs arrive.

Why here: comparing in the worker (which never runs model code; the sample is a separate,
hardened child) lets a sample be killed at its first wrong output instead of running every
remaining input, while the comparison still happens outside the sample, on builtin values
rebuilt by `wire.decode`. Which task needs which special rule is dataset knowledge and
lives with the dataset (`evolcoder.eval.problems`); the job names the rule.
"""

from __future__ import annotations

import math
from typing import Any

from evolcoder.eval.sandbox.wire import decode, digest

# The comparison rules a problem may name (`Problem.compare`, set by the dataset loader,
# which knows which tasks need them); '' is plain equality, with `atol` for floats.
RULES = ("poly_root", "always", "zero_or_equal", "surface_area", "digit_distance", "set", "not_none")
NEEDS_ARGS = ("poly_root", "surface_area", "digit_distance")  # rules that look at the input too


def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)


def _allclose(out: Any, exp: Any, atol: float, rtol: float = 1e-7) -> bool:
    if isinstance(exp, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(exp)
                and all(_allclose(o, e, atol, rtol) for o, e in zip(out, exp)))
    numbers = (int, float)
    if not isinstance(out, numbers) or not isinstance(exp, numbers):
        return False
    return abs(out - exp) <= atol + rtol * abs(exp)


def _poly(xs: list, x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _special(rule: str, args: list, out: Any, exp: Any, exact: bool, atol: float) -> bool:
    """The verdict of a special rule before the float tolerance applies (EvalPlus's oracles)."""
    if rule == "always":
        return True
    if rule == "zero_or_equal":
        return exact or out == 0
    if rule == "surface_area":
        b, s = args
        ref = b ** 2 + 2 * b * math.sqrt((b / 2) ** 2 + s ** 2)
        return exact or (isinstance(out, (int, float)) and abs(out - round(ref)) <= atol)
    if rule == "digit_distance":
        return exact or out == sum(abs(int(a) - int(b)) for a, b in zip(*(
            str(v).zfill(max(len(str(args[0])), len(str(args[1])))) for v in args)))
    if rule == "set":
        try:
            return set(out) == set(exp)
        except TypeError:
            return False
    if rule == "not_none":
        return out == exp if isinstance(out, bool) else exp == (out is not None)
    return exact


def outputs_match(rule: str, atol: float, args: list, out: Any, exp: Any) -> bool:
    """EvalPlus' comparison: equality, float tolerance, or the problem's special `rule`.

    `poly_root` (HumanEval/32, find_zero) is judged by |poly(xs, out)| <= atol, as its
    docstring asks: any root passes, not only the one the canonical solution finds.
    """
    if rule == "poly_root":
        return isinstance(out, (int, float)) and abs(_poly(args[0], out)) <= atol
    try:
        exact = out == exp
    except Exception:
        return False
    if rule:
        exact = _special(rule, args, out, exp, exact, atol)
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        return type(out) is type(exp) and _allclose(out, exp, atol)
    return bool(exact)


class StreamJudge:
    """Judges one `io` sample output by output; `feed` says why the first wrong one is wrong.

    `expected` holds the canonical outputs in transport form; an input where the canonical
    solution itself failed (a dataset erratum) or that the sample skipped is not judged.
    `ok_through` counts the leading inputs judged correct, so a sample that times out or
    crashes on a plus input still has a base verdict.
    """

    def __init__(self, oracle: dict, expected: list, inputs: list) -> None:
        self.rule = oracle.get("rule") or ""
        self.atol = float(oracle.get("atol") or 0.0)
        self.expected, self.inputs = expected, inputs
        self.needs_args = self.rule in NEEDS_ARGS
        self.ok_through = 0
        self.failure: str | None = None

    def feed(self, got: dict) -> str | None:
        """Judge the next output; returns the failure reason, or None while all is well."""
        i = self.ok_through
        if i >= len(self.expected):
            self.failure = f"more outputs than inputs ({i + 1})"
        elif "error" in got:
            self.failure = f"input {i}: {got['error']}"
        elif "error" not in self.expected[i] and "skipped" not in got and not self._same(i, got):
            how = " (compared by digest: output over 1 MiB)" if "digest" in got or "digest" in self.expected[i] else ""
            self.failure = f"wrong output on input {i}{how}"
        if self.failure is None:
            self.ok_through += 1
        return self.failure

    def _same(self, i: int, got: dict) -> bool:
        want = self.expected[i]
        if "digest" in got or "digest" in want:
            return (got.get("digest") or digest(got["ok"])) == (want.get("digest") or digest(want["ok"]))
        try:
            args = decode(self.inputs[i]) if self.needs_args else []
            return outputs_match(self.rule, self.atol, args, decode(got["ok"]), decode(want["ok"]))
        except (KeyError, TypeError, ValueError):
            return False
