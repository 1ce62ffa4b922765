"""AST mutants of a solution: do its tests notice when the code is wrong?

Tests that pass on the solution and on every broken copy of it assert nothing. Five
operators, each a single edit at one site: a comparison flipped, an arithmetic operator
swapped, an integer constant moved by one, a statement dropped, an early `return None`.
Sites are enumerated in source order and K of them drawn with a seeded RNG, so the same
solution and seed always give the same mutants.
"""

from __future__ import annotations

import ast
import copy
import random

_COMPARE = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
          ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}

Site = tuple[str, int]  # (operator, occurrence of that operator in walk order)


def _is_docstring(node: ast.stmt, body: list[ast.stmt]) -> bool:
    return (node is body[0] and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _int_constants(tree: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is int]


def _droppable(tree: ast.AST) -> list[tuple[list[ast.stmt], int]]:
    """(body, index) of statements inside functions whose removal leaves valid code."""
    out = []
    for fn in _functions(tree):
        for body in _bodies(fn):
            for i, node in enumerate(body):
                if not _is_docstring(node, body) and not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    out.append((body, i))
    return out


def _bodies(fn: ast.AST) -> list[list[ast.stmt]]:
    bodies = []
    for node in ast.walk(fn):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                bodies.append(body)
    return bodies


def _sites(tree: ast.AST) -> dict[str, list]:
    """Every mutation target by operator, in a deterministic order (ast.walk)."""
    return {
        "compare": [(n, i) for n in ast.walk(tree) if isinstance(n, ast.Compare)
                    for i, op in enumerate(n.ops) if type(op) in _COMPARE],
        "arith": [n for n in ast.walk(tree) if isinstance(n, (ast.BinOp, ast.AugAssign)) and type(n.op) in _ARITH],
        "const+1": _int_constants(tree),
        "const-1": _int_constants(tree),
        "drop": _droppable(tree),
        "return None": _functions(tree),
    }


def _apply(tree: ast.AST, site: Site) -> None:
    kind, index = site
    target = _sites(tree)[kind][index]
    if kind == "compare":
        node, i = target
        node.ops[i] = _COMPARE[type(node.ops[i])]()
    elif kind == "arith":
        target.op = _ARITH[type(target.op)]()
    elif kind in ("const+1", "const-1"):
        target.value += 1 if kind == "const+1" else -1
    elif kind == "drop":
        body, i = target
        body[i] = ast.Pass()
    else:
        at = 1 if _is_docstring(target.body[0], target.body) else 0
        target.body.insert(at, ast.Return(value=ast.Constant(value=None)))


def _interleaved(found: dict[str, list], rng: random.Random) -> list[Site]:
    """Sites shuffled within each operator, then taken one operator at a time, so K mutants
    spread over the operators instead of all landing on the commonest one."""
    queues = []
    for kind, targets in found.items():
        order = list(range(len(targets)))
        rng.shuffle(order)
        queues.append([(kind, i) for i in order])
    rng.shuffle(queues)
    out: list[Site] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def mutants(solution: str, k: int, seed: int) -> list[tuple[str, str]]:
    """Up to `k` distinct mutants as (description, source); fewer when the code has fewer sites."""
    tree = ast.parse(solution)
    original = ast.unparse(tree)
    sites = _interleaved(_sites(tree), random.Random(seed))
    out: dict[str, str] = {}
    for site in sites:
        if len(out) >= k:
            break
        mutated = copy.deepcopy(tree)
        _apply(mutated, site)
        source = ast.unparse(ast.fix_missing_locations(mutated))
        if source != original and source not in out.values():
            out[f"{site[0]} #{site[1] + 1}"] = source
    return list(out.items())
