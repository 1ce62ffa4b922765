"""Evolution rounds over real HTTP: the real `openai` client against a loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fakeserver import (EVOL_PREFIX, FakeServer, Fault, default_responder, remote_stats, request_key,
                        subprocess_server)

from evolcoder.config import EvolConfig, LLMConfig
from evolcoder.evolution.outputs import write_round
from evolcoder.evolution.rounds import RoundRunner
from evolcoder.llm.client import BudgetExhausted, make_client
from evolcoder.evolution.plan import round_plan
from evolcoder.records import seed_record

REPO = Path(__file__).resolve().parents[1]


def _items(n: int) -> list[dict]:
    return [seed_record(f"Write a Python function that returns the {i}-th triangular number for input n.", "", "") for i in range(n)]


def _llm(server: FakeServer, tmp: Path, **kw) -> LLMConfig:
    settings = {"provider": "openai", "model": "fake-evolver", "base_url": server.base_url,
                "concurrency": 4, "max_attempts": 3, "timeout_s": 5.0, "cache": str(tmp / "cache.sqlite"),
                "backoff_s": 0.01}
    settings.update(kw)
    return LLMConfig(**{"provider": "openai", **settings})


def _run(llm: LLMConfig, items: list[dict], round_no: int = 1, evol: EvolConfig | None = None):
    plan = round_plan(evol or EvolConfig(rounds=3, verify="off"), llm, round_no)  # the paper: 2 calls an item

    async def go():
        client = make_client(llm, stage=f"round@{round_no}")
        try:
            return await RoundRunner(plan, client).run(items, progress=False)
        finally:
            await client.aclose()

    return asyncio.run(go())


def _files(result, out: Path) -> dict[str, bytes]:
    write_round(result, out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_params_give_byte_identical_data_at_any_concurrency(tmp_path: Path) -> None:
    items = _items(24)
    with FakeServer(latency=0.01) as server:
        one = _run(_llm(server, tmp_path / "a", concurrency=1), items)
        many = _run(_llm(server, tmp_path / "b", concurrency=16), items)
        assert server.stats()["max_in_flight"] > 4
    a, b = _files(one, tmp_path / "out1"), _files(many, tmp_path / "out16")
    assert a.keys() == b.keys()
    for name in a:
        if name != "stats.json":
            assert a[name] == b[name], name
    stats = json.loads(a["stats.json"])
    assert stats["items_in"] == 24 and stats["kept"] == 24 and stats["llm_requests"] == 48


def test_unchanged_rerun_makes_zero_requests(tmp_path: Path) -> None:
    items = _items(10)
    with FakeServer() as server:
        llm = _llm(server, tmp_path)
        first = _run(llm, items)
        before = server.count()
        second = _run(llm, items)
        assert server.count() == before == 20
    assert second.usage["requests"] == 0 and second.usage["cache_hits"] == 20
    assert [o.record() for o in first.outcomes] == [o.record() for o in second.outcomes]


def test_each_elimination_rule_records_its_reason_and_keeps_the_parent(tmp_path: Path) -> None:
    items = _items(6)
    by_item = {
        0: ("same", None),  # evolved instruction identical to the parent
        1: ("#Rewritten Prompt#: " + items[1]["instruction"] + " Use recursion only.", None),
        2: (None, "I'm sorry, I cannot do that."),
        3: (None, "   ...   "),
        4: (None, "Sure, here it is."),
    }

    def responder(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        for index, (rewrite, answer) in by_item.items():
            text = items[index]["instruction"]
            if user.startswith(EVOL_PREFIX) and user.endswith(text) and rewrite is not None:
                return text if rewrite == "same" else rewrite
            if not user.startswith(EVOL_PREFIX) and user.startswith(text) and answer is not None:
                return answer
        return default_responder(messages)

    with FakeServer(responder=responder) as server:
        result = _run(_llm(server, tmp_path), items)
    outcomes = {o.item["id"]: o for o in result.outcomes}
    reasons = [outcomes[items[i]["id"]].reason or "" for i in range(6)]
    assert "no information gain" in reasons[0]
    assert "copies prompt words" in reasons[1]
    assert "sorry" in reasons[2]
    assert "only punctuation" in reasons[3]
    assert "stop words" in reasons[4]
    assert outcomes[items[5]["id"]].status == "kept"
    pool = result.pool()
    assert [p["id"] for p in pool[:5]] == [it["id"] for it in items[:5]]
    assert pool[5]["parent_id"] == items[5]["id"] and pool[5]["round"] == 1
    stats = result.stats()
    assert stats["eliminated"] == 5 and stats["kept"] == 1
    assert sum(stats["eliminated_by_reason"].values()) == 5


def test_truncated_rewrites_and_answers_are_eliminated_unless_switched_off(tmp_path: Path) -> None:
    items = _items(3)

    def responder(messages: list[dict]) -> str | Fault:
        user, reply = messages[-1]["content"], default_responder(messages)
        if user.startswith(EVOL_PREFIX) and user.endswith(items[0]["instruction"]):
            return Fault.reply(reply, finish_reason="length")
        if not user.startswith(EVOL_PREFIX) and user.startswith(items[1]["instruction"]):
            return Fault.reply(reply, finish_reason="length")
        return reply

    with FakeServer(responder=responder) as server:
        dropped = _run(_llm(server, tmp_path / "on"), items)
        kept = _run(_llm(server, tmp_path / "off"), items, evol=EvolConfig(rounds=3, verify="off", drop_truncated=False))
        cached = _run(_llm(server, tmp_path / "on"), items)
    reasons = [o.reason for o in dropped.outcomes]
    assert reasons == ["truncated at llm.max_tokens (evolved instruction)",
                       "truncated at llm.max_tokens (response)", None]
    assert dropped.stats()["eliminated_by_reason"] == {"truncated at llm.max_tokens": 2}
    assert [o.status for o in kept.outcomes] == ["kept"] * 3
    assert cached.usage["requests"] == 0 and [o.reason for o in cached.outcomes] == reasons, \
        "finish_reason must survive the cache"


def test_llm_equality_check_is_an_extra_call_behind_a_param(tmp_path: Path) -> None:
    items = _items(3)

    def responder(messages: list[dict]) -> str:
        if messages[-1]["content"].startswith("Here are two Instructions"):
            return "Equal"
        return default_responder(messages)

    with FakeServer(responder=responder) as server:
        result = _run(_llm(server, tmp_path), items, evol=EvolConfig(rounds=3, verify="off", llm_equality_check=True))
        assert server.count("/v1/chat/completions") == 6
    assert all(o.reason == "no information gain (LLM judged equal)" for o in result.outcomes)


def test_a_permanent_error_fails_only_that_item(tmp_path: Path) -> None:
    items = _items(3)
    with FakeServer() as server:
        server.push(Fault.error(400))
        result = _run(_llm(server, tmp_path, concurrency=1), items)
    statuses = sorted(o.status for o in result.outcomes)
    assert statuses == ["failed", "kept", "kept"]
    failed = next(o for o in result.outcomes if o.status == "failed")
    assert failed.reason and "400" in failed.reason
    assert failed.item in result.pool()


def test_transient_errors_are_retried_within_the_round(tmp_path: Path) -> None:
    items = _items(2)
    with FakeServer() as server:
        server.push(Fault.rate_limit(retry_after="0"), Fault.error(500), Fault.bad_json())
        result = _run(_llm(server, tmp_path, concurrency=1, max_attempts=4), items)
        assert server.count() == 4 + 3
    assert all(o.status == "kept" for o in result.outcomes)
    assert result.usage["retries"] == 3


def test_max_calls_stops_cleanly_and_keeps_what_was_done(tmp_path: Path) -> None:
    items = _items(10)
    with FakeServer() as server:
        with pytest.raises(BudgetExhausted):
            _run(_llm(server, tmp_path, concurrency=2, max_calls=7), items)
        paid = server.count()
        assert paid == 7
        result = _run(_llm(server, tmp_path, concurrency=2), items)
        assert server.count() - paid == 20 - 7
    assert result.usage["cache_hits"] == 7 and all(o.status == "kept" for o in result.outcomes)


def _saved_request_keys(cache: Path) -> set[str]:
    """The server's key (`fakeserver.request_key`) of every completion in the client's cache."""
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT request FROM completions").fetchall()
    return {request_key([{"role": r, "content": c} for r, c in json.loads(req)["messages"]]) for (req,) in rows}


def test_round_stage_killed_with_sigkill_repeats_no_saved_request(tmp_path: Path) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(item) + "\n" for item in _items(40)))
    log = tmp_path / "server.jsonl"
    with subprocess_server(latency=0.05, log_path=str(log)) as base_url:
        params = tmp_path / "params.yaml"
        params.write_text(json.dumps({"evol": {"rounds": 1, "verify": "off"},
                                      "evolver": {"provider": "openai", "model": "fake", "base_url": base_url},
                                      "llm": {"concurrency": 2, "cache": str(tmp_path / "cache.sqlite")}}))
        plan = tmp_path / "plan" / "round_1.json"
        subprocess.run([sys.executable, str(REPO / "stages" / "plan.py"), "--params", str(params),
                        "--out-dir", str(plan.parent), "--slots", "1"], check=True)
        cmd = [sys.executable, str(REPO / "stages" / "round.py"), "--params", str(params), "--plan", str(plan),
               "--prev", str(seed), "--out-dir", str(tmp_path / "r1"), "--no-progress"]
        proc = subprocess.Popen(cmd, start_new_session=True)
        deadline = time.monotonic() + 60
        while len(remote_stats(base_url)["completed"]) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = set(remote_stats(base_url)["completed"])
        assert 15 <= len(done_before) < 80
        assert not (tmp_path / "r1" / "stats.json").exists()
        saved = _saved_request_keys(tmp_path / "cache.sqlite")
        # A response the server had sent but the killed client had not yet committed is lost
        # with the process: at most one per slot in flight (concurrency 2).
        assert saved <= done_before and len(done_before - saved) <= 2
        subprocess.run(cmd, check=True, timeout=120)
        completed = remote_stats(base_url)["completed"]
    assert len(set(completed)) == 80
    repeated = Counter(completed) - Counter(set(completed))
    assert not saved & set(repeated), "a completion saved before the kill was paid for again"
    assert set(repeated) == done_before - saved
    kept = (tmp_path / "r1" / "kept.jsonl").read_text().splitlines()
    assert len(kept) == 40
