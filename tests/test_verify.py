"""Execution verification (evol.verify) against planted truth, over real HTTP and the real sandbox.

A loopback OpenAI-compatible server answers every evolution, answer and test-writing request
from a planted table: right solutions with right tests, wrong solutions, tests that assert
nothing, code that never terminates, code that writes outside its directory or connects
out, prose without code, code without tests. The round's verdicts are scored against that
table, and the hostile items' effects are looked for outside the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from dvcproject import make_project, ran, sh
from fakeserver import EVOL_PREFIX, FakeServer
from test_dvc_rounds import loopback_params

from evolcoder.config import EvolConfig, LLMConfig, build
from evolcoder.errors import ConfigError
from evolcoder.evolution.checks import split_answer, written_tests
from evolcoder.evolution.mutants import mutants
from evolcoder.evolution.plan import RoundPlan, round_plan
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.evolution.verify import Verifier
from evolcoder.llm.client import make_client
from evolcoder.records import record_id

TESTS_PREFIX = "Write unit tests for the following programming task."

# name, body of a right solution, a wrong one, right asserts (expressions of the function `f<i>`)
FAMILIES = [
    ("add", "return a + b + {k}", "return a - b + {k}", ["f(1, 2) == {k} + 3", "f(0, 0) == {k}"]),
    ("scale", "return [x * {k} for x in xs]", "return [x * {k} for x in xs[1:]]",
     ["f([1, 2]) == [{k}, 2 * {k}]", "f([]) == []"]),
    ("count_above", "return sum(1 for x in xs if x > {k})", "return sum(1 for x in xs if x >= {k})",
     ["f([{k}, {k} + 1, {k} + 2]) == 2", "f([]) == 0"]),
    ("clamp", "return max({k}, min(x, {k} + 10))", "return min({k}, max(x, {k} + 10))",
     ["f(-100) == {k}", "f(1000) == {k} + 10", "f({k} + 5) == {k} + 5"]),
    ("last_digits", "return n % (10 ** {k})", "return n // (10 ** {k})",
     ["f(123456789) == 123456789 % (10 ** {k})", "f(0) == 0"]),
]
ARGS = {"add": "a, b", "scale": "xs", "count_above": "xs", "clamp": "x", "last_digits": "n"}


def _fn(name: str, i: int, body: str, k: int) -> str:
    return f"def {name}_{i}({ARGS[name]}):\n    {body.format(k=k)}\n"


def _asserts(name: str, i: int, exprs: list[str], k: int) -> list[str]:
    return [f"assert {e.format(k=k).replace('f(', f'{name}_{i}(')}" for e in exprs]


def _answer(code: str, tests: list[str] = ()) -> str:
    block = code + ("\n" + "\n".join(tests) + "\n" if tests else "")
    return f"Here is a solution that handles the cases described.\n\n```python\n{block}```\n\nIt runs in linear time."


def _tests_reply(lines: list[str]) -> str:
    return "```python\n" + "\n".join(lines) + "\n```" if lines else "I cannot write tests for this task."


def planted(escape: Path, port: int) -> list[dict]:
    """Every item: its instruction, answer, written tests and whether verification should keep it."""
    items = []

    def add(kind: str, good: bool, answer: str, tests: list[str], retry: str | None = None) -> None:
        n = len(items)
        items.append({"n": n, "kind": kind, "good": good, "answer": answer, "tests": _tests_reply(tests),
                      "retry": retry})

    for i in range(30):  # right solutions, right tests: from the answer, the LLM, or both
        name, right, _, exprs = FAMILIES[i % len(FAMILIES)]
        k = i + 1
        asserts = _asserts(name, i, exprs, k)
        own, written = [(asserts, []), ([], asserts), (asserts[:1], asserts[1:])][i % 3]
        add("right", True, _answer(_fn(name, i, right, k), own), written)
    for i in range(30, 45):  # wrong solutions, right tests
        name, _, wrong, exprs = FAMILIES[i % len(FAMILIES)]
        asserts = _asserts(name, i, exprs, i)
        add("wrong", False, _answer(_fn(name, i, wrong, i), asserts if i % 2 else []), [] if i % 2 else asserts)
    for i in range(45, 55):  # right solutions, tests that assert nothing
        name, right, _, exprs = FAMILIES[i % len(FAMILIES)]
        call = f"{name}_{i}({'1, 2' if name == 'add' else '[1, 2, 3]' if ARGS[name] == 'xs' else '7'})"
        vacuous = [["assert True"], [f"def test_call():\n    result = {call}"], [f"assert {call} == {call}"],
                   [f"def test_runs():\n    {call}\n    assert True"]][i % 4]
        written = vacuous if i % 2 else []
        add("vacuous", False, _answer(_fn(name, i, right, i), [] if written else vacuous),
            written or ["assert 1 == 1"])
    for i in range(55, 59):  # never terminates
        body = ["while True:\n        pass", "while n >= 0:\n        n += 1",
                "import time\n    time.sleep(3600)", "x = 1\n    while x:\n        x = x * 2 or 1"][i % 4]
        add("loop", False, _answer(f"def loop_{i}(n):\n    {body}\n"), [f"assert loop_{i}(3) == 3"])
    for i in range(59, 61):  # writes outside its directory, connects out; else correct
        grab = (f"open({str(escape)!r}, 'w').write('escaped')" if i == 59 else
                f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')")
        add("hostile", False, _answer(f"{grab}\ndef ok_{i}(x):\n    return x + 1\n", [f"assert ok_{i}(1) == 2"]),
            [f"assert ok_{i}(2) == 3"])
    add("no code", False, "To solve this, loop over the values and add the constant to each of them, "
        "returning the new list; take care with empty input.", [])
    add("no tests", False, _answer(_fn("add", 62, "return a + b + 62", 62)), [])
    return items


class Planted:
    """Responder over the planted table; counts requests by purpose and answer attempts per item."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.by_purpose: dict[str, int] = {}
        self.answers: dict[int, int] = {}

    def __call__(self, messages: list[dict]) -> str:
        user = messages[-1]["content"]
        purpose = "evolve" if user.startswith(EVOL_PREFIX) else "tests" if user.startswith(TESTS_PREFIX) else "answer"
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0) + 1
        n = int(re.search(r"task (\d+)", user, re.IGNORECASE).group(1))
        item = self.items[n]
        if purpose == "evolve":
            return (f"Task {n}: implement the function described below exactly, validating its input, and "
                    f"keep it free of side effects ({item['kind']} family, case {n}).")
        if purpose == "tests":
            return item["tests"]
        self.answers[n] = self.answers.get(n, 0) + 1
        return item["retry"] if item["retry"] and self.answers[n] > 1 else item["answer"]


def _seeds(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        text = f"Seed task {item['n']}: write a small function."
        out.append({"id": record_id(text), "root_id": record_id(text), "parent_id": None, "round": 0,
                    "method": None, "instruction": text, "input": "", "output": ""})
    return out


def _round(server: FakeServer, tmp: Path, seeds: list[dict], **evol) -> tuple:
    llm = LLMConfig(provider="openai", model="fake", base_url=server.base_url, concurrency=8,
                    cache=str(tmp / "cache.sqlite"), max_attempts=2, backoff_s=0.01)
    plan = round_plan(EvolConfig(rounds=1, **evol), llm, 1)

    async def go():
        verifier = Verifier.start(plan.verify, workers=2)
        client = make_client(llm, stage="round@1")
        try:
            return await RoundRunner(plan, client, verifier).run(seeds, progress=False)
        finally:
            await client.aclose()
            verifier.close()

    return plan, asyncio.run(go())


def test_filter_matches_planted_truth_and_contains_hostile_code(tmp_path: Path) -> None:
    escape = tmp_path / "escaped.txt"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    items = planted(escape, listener.getsockname()[1])
    responder = Planted(items)
    with FakeServer(responder=responder) as server:
        _, result = _round(server, tmp_path, _seeds(items), verify="tests+mutants", verify_eliminate=True,
                           verify_attempts=0, verify_timeout_s=2.0)
    kept = {o.item["instruction"] for o in result.outcomes if o.status == "kept"}
    truth = {f"Seed task {i['n']}: write a small function." for i in items if i["good"]}
    precision = len(kept & truth) / max(1, len(kept))
    recall = len(kept & truth) / len(truth)
    rules = {o.item["instruction"].split(":")[0]: o.rule for o in result.outcomes}
    assert precision >= 0.98 and recall >= 0.98, (precision, recall, rules)
    by_kind = {i["kind"]: rules[f"Seed task {i['n']}"] for i in items if not i["good"]}
    assert by_kind == {"wrong": "verify: tests failed", "vacuous": "verify: tests assert nothing",
                       "loop": "verify: timed out", "hostile": "verify: tests failed",
                       "no code": "verify: no runnable code", "no tests": "verify: no tests"}
    assert not escape.exists()
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    stats = result.stats()
    assert stats["verify_items"] == len(items) and stats["verified_fraction"] == round(30 / len(items), 4)
    assert 0 < stats["mutant_kill_rate"] < 1  # right tests kill mutants, vacuous ones kill none
    assert stats["eliminated_by_reason"]["verify: tests assert nothing"] == 10
    assert responder.by_purpose == {"evolve": len(items), "answer": len(items), "tests": len(items)}
    assert stats["llm_requests"] == 3 * len(items)  # the test-writing calls are counted in the round's usage
    kept_records = result.kept()
    assert all(r["tests"] and all(t.startswith(("assert", "def test")) for t in r["tests"]) for r in kept_records)
    failed = next(o.record()["verify"] for o in result.outcomes if o.rule == "verify: tests failed"
                  and "wrong" in o.evolved_instruction)
    assert failed["test"] and failed["error"].startswith("AssertionError")


def test_failed_item_is_answered_again_with_another_seed(tmp_path: Path) -> None:
    items = planted(tmp_path / "x", 9)[30:32]  # two wrong solutions; the first is fixed on its retry
    for n, item in enumerate(items):
        item["n"] = n
    name, right, _, exprs = FAMILIES[30 % len(FAMILIES)]
    items[0]["retry"] = _answer(_fn(name, 30, right, 30))
    responder = Planted(items)
    with FakeServer(responder=responder) as server:
        _, result = _round(server, tmp_path, _seeds(items), verify="tests", verify_eliminate=True,
                           verify_attempts=2)
    assert [o.status for o in result.outcomes] == ["kept", "eliminated"]
    assert [o.reanswers for o in result.outcomes] == [1, 2]
    assert responder.answers == {0: 2, 1: 3}
    assert result.stats()["verify_reanswers"] == 3


def test_measure_only_keeps_everything_and_records_verdicts(tmp_path: Path) -> None:
    items = planted(tmp_path / "x", 9)[28:33]
    for n, item in enumerate(items):
        item["n"] = n
    with FakeServer(responder=Planted(items)) as server:
        _, result = _round(server, tmp_path, _seeds(items), verify="tests", verify_eliminate=False)
    assert all(o.status == "kept" for o in result.outcomes)
    assert [o.verdict.status for o in result.outcomes] == ["passed", "passed", "failed", "failed", "failed"]
    assert ["tests" in r for r in result.kept()] == [True, True, False, False, False]
    assert result.stats()["verified_fraction"] == 0.4 and result.stats()["mutant_kill_rate"] is None


def test_plan_omits_verification_when_off(tmp_path: Path) -> None:
    llm = LLMConfig(provider="openai", model="fake", base_url="http://127.0.0.1:9/v1")
    off = round_plan(EvolConfig(verify="off"), llm, 1)
    off.to_file(tmp_path / "off.json")
    assert "verify" not in json.loads((tmp_path / "off.json").read_text())
    on = round_plan(EvolConfig(verify="tests+mutants", verify_mutants=3), llm, 1)
    on.to_file(tmp_path / "on.json")
    assert RoundPlan.from_file(tmp_path / "on.json") == on and on.verify.mutants == 3
    assert "{instruction}" in on.verify.tests_template
    assert build(EvolConfig, {"verify": False}, "evol").verify == "off"  # YAML 1.1 reads a bare `off` as false
    with pytest.raises(ConfigError, match="evol.verify"):
        build(EvolConfig, {"verify": True}, "evol")


def test_tests_are_cut_out_of_the_answer_and_mutants_differ() -> None:
    split = split_answer("```python\nimport math\ndef f(x):\n    return math.floor(x) + 1\n\n"
                         "def test_f():\n    assert f(1.5) == 2\n\nassert f(0) == 1\ntest_f()\n"
                         "if __name__ == '__main__':\n    assert f(2) == 3\n    print(f(3))\n```")
    assert "assert" not in split.solution and "test_f" not in split.solution and "print" not in split.solution
    assert [t.name for t in split.tests] == ["test_f", "answer assert 1", "answer assert 2"]
    assert written_tests("```python\nimport math\ndef f(x): return 0\nassert f(1) == 2\n```")[0].source == \
        "import math\nassert f(1) == 2"
    cut_off = written_tests("Tests:\n```python\nassert g(1) == 2\nassert g(2) == 4\nassert g([1, 2,")
    assert [t.source for t in cut_off] == ["assert g(1) == 2", "assert g(2) == 4"]  # stopped at max_tokens
    assert split_answer("The answer is to sort the list first.").solution is None
    found = mutants(split.solution, 8, seed=1)
    assert len({src for _, src in found}) == len(found) >= 4
    assert all(src != split.solution for _, src in found)
    assert {what.split(" #")[0] for what, _ in found} >= {"arith", "const+1", "return None"}


SERVER = textwrap.dedent("""
    import json, re, sys
    sys.path.insert(0, {tests!r})
    from fakeserver import EVOL_PREFIX, FakeServer, default_responder

    def responder(messages):
        user = messages[-1]["content"]
        kind = "evolve" if user.startswith(EVOL_PREFIX) else "tests" if user.startswith({prefix!r}) else "answer"
        with open({log!r}, "a") as log:
            log.write(json.dumps({{"kind": kind, "content": user}}) + "\\n")
        if kind != "tests":
            return default_responder(messages)
        return "```python\\nassert True\\n```"

    server = FakeServer(responder=responder)
    print(f"listening on {{server.base_url}}", flush=True)
    server.serve_forever()
""")


@pytest.mark.slow
def test_turning_verification_on_reuses_every_evolve_and_answer(tmp_path: Path) -> None:
    """`dvc exp run -S evol.verify=tests` after a run without it: only test-writing calls reach the server."""
    import subprocess

    log = tmp_path / "requests.jsonl"
    script = tmp_path / "server.py"
    script.write_text(SERVER.format(tests=str(Path(__file__).parent), prefix=TESTS_PREFIX, log=str(log)))
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} times n."}) + "\n"
                            for i in range(4)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().split("listening on ", 1)[1].strip()
        params = loopback_params(seed, base_url, rounds=2)
        params["evol"]["verify"] = "off"
        project = make_project(tmp_path, params)
        assert {"round@1", "round@2", "merge"} <= ran(sh(project, "dvc", "repro", "merge"))
        first = [json.loads(line) for line in log.read_text().splitlines()]
        assert {r["kind"] for r in first} == {"evolve", "answer"}
        sh(project, "git", "add", "-A")
        sh(project, "git", "commit", "-qm", "verify off")

        again = ran(sh(project, "dvc", "exp", "run", "-S", "evol.verify=tests", "merge"))
        assert {"plan", "round@1", "round@2", "merge"} <= again
        second = [json.loads(line) for line in log.read_text().splitlines()][len(first):]
        assert {r["kind"] for r in second} == {"tests"} and len(second) == 8
        evol = json.loads((project / "metrics/evol.json").read_text())
        assert evol["per_round"]["r1"]["verify_items"] == 4 and "verified_fraction" in evol["per_round"]["r2"]
        rows = json.loads((project / "metrics/evol_rounds.json").read_text())
        assert [r["verified_fraction"] is not None for r in rows] == [False, True, True]
        plots = sh(project, "dvc", "plots", "show", "--json").stdout
        drawn = json.loads(plots[plots.index("{"):])["data"]["verification by round"][0]["content"]["data"]["values"]
        assert {(v["round"], v["field"]) for v in drawn} >= {(2, "verified_fraction"), (2, "mutant_kill_rate")}
        from evolcoder.report import verification_lines

        table = verification_lines(evol)
        assert table[1].startswith("Execution verification") and [row.split(" | ")[0] for row in table[5:]] == ["| r1", "| r2"]
        assert f"| r2 | {evol['per_round']['r2']['verified_fraction']:.4g} |" in table[6]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
