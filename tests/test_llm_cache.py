"""Never pay twice: re-runs, SIGKILL mid-run, budgets, several processes, the stats command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, request_key

from evolcoder.cli import main as cli
from evolcoder.config import LLMConfig
from evolcoder.llm.base import ChatRequest, Completion
from evolcoder.llm.cache import CompletionCache
from evolcoder.llm.client import BudgetExhausted, make_client


def _cfg(server: FakeServer, tmp: Path, **kw) -> LLMConfig:
    settings = {"model": "fake", "base_url": server.base_url, "concurrency": 8, "max_attempts": 3,
                "timeout_s": 5.0, "backoff_s": 0.01, "cache": str(tmp / "cache.sqlite")}
    settings.update(kw)
    return LLMConfig(**{"provider": "openai", **settings})


def _requests(n: int, **settings) -> list[ChatRequest]:
    return [ChatRequest.user(f"Write a function number {i} that reverses a list.", **settings) for i in range(n)]


def _run(cfg: LLMConfig, requests: list[ChatRequest], stage: str = "test"):
    async def go():
        client = make_client(cfg, stage=stage)
        try:
            results = await asyncio.gather(*(client.complete(r) for r in requests), return_exceptions=True)
            return results, client.usage()
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_unchanged_rerun_makes_zero_requests(tmp_path: Path) -> None:
    with FakeServer(latency=0.01) as server:
        cfg = _cfg(server, tmp_path)
        first, usage1 = _run(cfg, _requests(20))
        assert server.count() == 20
        second, usage2 = _run(cfg, _requests(20))
        assert server.count() == 20, "a re-run must not reach the server"
    assert [r.text for r in first] == [r.text for r in second]
    assert not any(r.cached for r in first) and all(r.cached for r in second)
    assert usage1["requests"] == 20 and usage2 == {**usage2, "requests": 0, "cache_hits": 20}


def test_every_part_of_the_key_separates_entries(tmp_path: Path) -> None:
    base = ChatRequest.user("same prompt")
    variants = [base, ChatRequest.user("same prompt", seed=1), ChatRequest.user("same prompt", temperature=0.5),
                ChatRequest.user("same prompt", top_p=0.5), ChatRequest.user("same prompt", max_tokens=9),
                ChatRequest(messages=(("system", "x"), ("user", "same prompt")))]
    with FakeServer() as server:
        _run(_cfg(server, tmp_path), variants)
        _run(_cfg(server, tmp_path, model="other-model"), [base])
        assert server.count() == len(variants) + 1
        _run(_cfg(server, tmp_path), variants)
        assert server.count() == len(variants) + 1


def test_identical_requests_in_flight_are_paid_once(tmp_path: Path) -> None:
    with FakeServer(latency=0.1) as server:
        results, usage = _run(_cfg(server, tmp_path), [ChatRequest.user("dup")] * 10)
        assert server.count() == 1
    assert len({r.text for r in results}) == 1
    assert usage["requests"] == 1 and usage["cache_hits"] == 9


def test_max_calls_stops_cleanly_and_keeps_what_was_done(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, max_calls=5, concurrency=1)
        results, usage = _run(cfg, _requests(8))
        assert server.count() == 5
        done = [r for r in results if not isinstance(r, BaseException)]
        stopped = [r for r in results if isinstance(r, BudgetExhausted)]
        assert len(done) == 5 and len(stopped) == 3 and "llm.max_calls=5" in str(stopped[0])
        assert usage["requests"] == 5
        # hits are still served under the budget; the next run finishes only the rest
        again, usage2 = _run(_cfg(server, tmp_path, max_calls=3), _requests(8))
        assert server.count() == 8 and usage2["cache_hits"] == 5 and usage2["requests"] == 3
    assert not any(isinstance(r, BaseException) for r in again)


def test_usage_and_cost_estimate(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, price_per_1k={"prompt": 1.0, "completion": 2.0})
        results, usage = _run(cfg, _requests(3))
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    assert usage["prompt_tokens"] == prompt > 0 and usage["completion_tokens"] == completion > 0
    assert usage["est_cost"] == pytest.approx(prompt / 1000 * 1.0 + completion / 1000 * 2.0)


def test_call_log_records_every_call_and_cache_stats_reports_per_stage(tmp_path: Path) -> None:
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        _run(cfg, _requests(4), stage="round@1")
        _run(cfg, _requests(6), stage="round@2")  # 4 hits + 2 paid
    with sqlite3.connect(cfg.cache) as db:
        rows = db.execute("SELECT stage, cached, prompt_tokens, completion_tokens, latency_s, attempts "
                          "FROM calls ORDER BY id").fetchall()
    assert len(rows) == 10
    assert sum(1 for r in rows if r[0] == "round@2" and r[1] == 1) == 4
    assert all(r[2] > 0 and r[3] > 0 and r[4] >= 0 for r in rows)
    params = tmp_path / "params.yaml"
    params.write_text(f"llm:\n  cache: {cfg.cache}\n  price_per_1k: {{prompt: 0.5, completion: 1.5}}\n")
    out = CliRunner().invoke(cli, ["cache", "stats", "--params", str(params), "--json"])
    assert out.exit_code == 0, out.output
    stats = {s["stage"]: s for s in json.loads(out.output)["stages"]}
    assert (stats["round@1"]["requests"], stats["round@1"]["cache_hits"]) == (4, 0)
    assert (stats["round@2"]["requests"], stats["round@2"]["cache_hits"]) == (2, 4)
    assert stats["round@2"]["est_cost"] > 0
    text = CliRunner().invoke(cli, ["cache", "stats", "--cache", cfg.cache])
    assert text.exit_code == 0 and "round@2" in text.output and "6 stored completions" in text.output
    missing = CliRunner().invoke(cli, ["cache", "stats", "--cache", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no cache file" in missing.output


WORKER = textwrap.dedent("""
    import asyncio, sys
    from evolcoder.config import LLMConfig
    from evolcoder.llm.base import ChatRequest
    from evolcoder.llm.client import make_client

    async def main(base_url, cache, n):
        cfg = LLMConfig(provider="openai", model="fake", base_url=base_url, concurrency=8, cache=cache)
        client = make_client(cfg, stage="worker")
        reqs = [ChatRequest.user(f"Task {i}: write a function that sorts a list.") for i in range(n)]
        await asyncio.gather(*(client.complete(r) for r in reqs))
        await client.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


def _stored(cache: Path) -> int:
    try:
        with sqlite3.connect(cache, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_run_repeats_no_completed_request(tmp_path: Path) -> None:
    n = 160
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cache = tmp_path / "cache.sqlite"
    with FakeServer(latency=0.05) as server:
        proc = subprocess.Popen([sys.executable, str(script), server.base_url, str(cache), str(n)])
        deadline = time.monotonic() + 60
        while _stored(cache) < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with CompletionCache(cache) as c:
            survived = c.keys()
        assert 40 <= len(survived) < n, "the kill must land mid-run"
        first_run = [request_key(r["messages"]) for r in server.requests]
        server.reset_counts()

        subprocess.run([sys.executable, str(script), server.base_url, str(cache), str(n)], check=True)
        second_run = [request_key(r["messages"]) for r in server.requests]
    with CompletionCache(cache) as c:
        assert len(c.keys()) == n
    cached_prompts = {_content_key(cache, k) for k in survived}
    assert not cached_prompts & set(second_run), "a request completed before the kill was sent again"
    assert len(second_run) == n - len(survived) == len(set(second_run))
    assert len(first_run) >= len(survived)


def _content_key(cache: Path, key: str) -> str:
    with sqlite3.connect(cache) as db:
        request = json.loads(db.execute("SELECT request FROM completions WHERE key=?", (key,)).fetchone()[0])
    return request_key([{"role": r, "content": c} for r, c in request["messages"]])


PUTTER = textwrap.dedent("""
    import sys
    from evolcoder.llm.base import ChatRequest, Completion
    from evolcoder.llm.cache import CallLog, CompletionCache
    cache = CompletionCache(sys.argv[1])
    for i in range(int(sys.argv[3])):
        key = f"{sys.argv[2]}-{i}"
        cache.put(key, "p", "m", ChatRequest.user(key), Completion(key, 1, 1), CallLog("s", "p", "m", key, False))
        cache.log(CallLog("s", "p", "m", key, True), defer=True)
    cache.close()
""")


def test_several_processes_share_one_cache(tmp_path: Path) -> None:
    script = tmp_path / "putter.py"
    script.write_text(PUTTER)
    cache = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, str(script), str(cache), f"p{j}", "150"]) for j in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with CompletionCache(cache) as c:
        assert c.count_completions() == 450
        assert c.get("p2-149") == Completion("p2-149", 1, 1, None)
        [row] = c.stats()
    assert (row["requests"], row["cache_hits"]) == (450, 450)


def test_evolcoder_cache_env_overrides_the_params_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared" / "cache.sqlite"
    monkeypatch.setenv("EVOLCODER_CACHE", str(shared))
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path / "workspace")
        _run(cfg, _requests(2))
    assert shared.is_file() and not Path(cfg.cache).exists()
    out = CliRunner().invoke(cli, ["cache", "stats", "--params", str(tmp_path / "absent.yaml"), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["completions"] == 2


def test_queued_experiment_workspaces_share_the_project_cache(tmp_path, monkeypatch) -> None:
    from evolcoder.config import LLMConfig
    from evolcoder.llm.client import cache_location

    monkeypatch.delenv("EVOLCODER_CACHE", raising=False)
    cfg = LLMConfig(cache=".evolcoder/cache.sqlite")
    temp_ws = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "run" / "tmpab12"
    assert cache_location(cfg, temp_ws) == str(tmp_path / "proj" / ".evolcoder" / "cache.sqlite")
    assert cache_location(cfg, tmp_path / "proj") == ".evolcoder/cache.sqlite"
    assert cache_location(LLMConfig(cache="/abs/c.sqlite"), temp_ws) == "/abs/c.sqlite"


def _stats_json(cache: str, params: Path | None = None) -> dict:
    args = ["cache", "stats", "--cache", cache, "--json"] + (["--params", str(params)] if params else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return {s["stage"]: s for s in json.loads(result.output)["stages"]}


def test_cache_stats_reports_retries_and_failures_by_cause(tmp_path: Path) -> None:
    from fakeserver import Fault

    with FakeServer() as server:
        cfg = _cfg(server, tmp_path, concurrency=1, max_attempts=2, max_consecutive_failures=0)
        server.push(Fault.error(500), Fault(), Fault.rate_limit("0"), Fault(), Fault.empty(), Fault.empty(),
                    Fault.error(400))  # one slot: the requests run (and retry) one after another
        results, usage = _run(cfg, _requests(4), stage="round@1")
    assert [type(r).__name__ for r in results] == ["CallResult", "CallResult", "RequestFailed", "RequestFailed"]
    assert usage["failures_by_cause"] == {"empty": 1, "invalid_request": 1}
    row = _stats_json(cfg.cache)["round@1"]
    assert row["retries"] == usage["retries"] == 3
    assert row["retries_by_cause"] == {"empty": 1, "rate_limit": 1, "server_error": 1}
    assert row["failures_by_cause"] == {"empty": 1, "invalid_request": 1} and row["failures"] == 2
    text = CliRunner().invoke(cli, ["cache", "stats", "--cache", cfg.cache]).output
    assert "retries by cause: empty 1, rate_limit 1, server_error 1" in text
    assert "failures by cause: empty 1, invalid_request 1" in text


def test_request_seconds_exclude_waiting_for_a_slot(tmp_path: Path) -> None:
    """One slot, six requests queued at once: each request's own time, not its time in the queue."""
    with FakeServer(latency=0.1) as server:
        cfg = _cfg(server, tmp_path, concurrency=1)
        _run(cfg, _requests(6), stage="round@1")
    row = _stats_json(cfg.cache)["round@1"]
    assert row["runs"] == 1 and row["wall_seconds"] > 0
    # Requests ran one after another inside the stage, so their own times cannot add up to more
    # than its wall time; counting the queue would make them add up to about 3.5 times as much.
    assert 0.6 <= row["request_seconds"] <= row["wall_seconds"]


def test_cost_is_estimated_from_list_prices_when_unset_and_labelled(tmp_path: Path) -> None:
    from evolcoder.llm.client import price_for

    assert price_for("gpt-4o-mini-2024-07-18", None) == ({"prompt": 0.00015, "completion": 0.0006}, True)
    assert price_for("gpt-4o", None)[0] == {"prompt": 0.0025, "completion": 0.01}
    assert price_for("fake", None) == (None, False)
    assert price_for("gpt-4o", {"prompt": 1.0}) == ({"prompt": 1.0}, False)
    with FakeServer() as server:
        _run(_cfg(server, tmp_path, model="gpt-4o-mini"), _requests(2), stage="round@1")
        _run(_cfg(server, tmp_path, model="fake"), _requests(2), stage="round@2")
    cache = str(tmp_path / "cache.sqlite")
    rows = _stats_json(cache, tmp_path / "absent.yaml")
    mini = rows["round@1"]
    assert mini["est_cost"] == pytest.approx(mini["prompt_tokens"] * 0.00015 / 1000
                                             + mini["completion_tokens"] * 0.0006 / 1000, abs=1e-6)
    assert "estimate" in mini["cost_source"] and "est_cost" not in rows["round@2"]
    text = CliRunner().invoke(cli, ["cache", "stats", "--cache", cache, "--params", str(tmp_path / "absent.yaml")])
    assert "~0.0" in text.output and "estimated from" in text.output


def test_empty_entries_of_older_caches_are_ignored_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:  # the schema before causes were logged
        db.executescript("""
            CREATE TABLE completions (key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL,
                request TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL, finish_reason TEXT, created REAL NOT NULL);
            CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stage TEXT NOT NULL,
                provider TEXT NOT NULL, model TEXT NOT NULL, key TEXT NOT NULL, cached INTEGER NOT NULL,
                prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_s REAL NOT NULL,
                attempts INTEGER NOT NULL, error TEXT);""")
        request = _requests(1)[0]
        key = request.cache_key("openai", "fake")
        db.execute("INSERT INTO completions VALUES (?,?,?,?,?,?,?,?,?)", (key, "openai", "fake", "{}", " \n", 1, 0,
                                                                        "stop", 0.0))
    with FakeServer() as server:
        cfg = _cfg(server, tmp_path)
        [result], usage = _run(cfg, [request])
        assert server.count() == 1, "an empty cached text is not an answer: pay for a real one"
        [again], _ = _run(cfg, [request])
        assert server.count() == 1 and again.cached and again.text == result.text
    with CompletionCache(path) as cache:
        assert cache.get(key).text == result.text and cache.count_completions() == 1
        cache.put(key, "openai", "fake", request, Completion(""), _log_row(key))
        assert cache.get(key).text == result.text, "an empty text never replaces an answer"


def _log_row(key: str):
    from evolcoder.llm.cache import CallLog

    return CallLog("t", "openai", "fake", key, False)


def test_stop_strings_key_only_requests_that_have_them() -> None:
    """Adding `stop` kept every existing key: caches filled before it still answer the rounds."""
    import hashlib

    request = ChatRequest.user("Write fizzbuzz.", temperature=0.7, top_p=0.95, max_tokens=64, seed=3)
    before = {"provider": "openai", "model": "m", "messages": [["user", "Write fizzbuzz."]], "temperature": 0.7,
              "top_p": 0.95, "max_tokens": 64, "seed": 3}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert request.cache_key("openai", "m") == expected
    stopped = ChatRequest.user("Write fizzbuzz.", temperature=0.7, top_p=0.95, max_tokens=64, seed=3, stop=("\ndef ",))
    assert stopped.cache_key("openai", "m") != expected


def test_answers_of_one_loop_turn_share_one_commit_and_are_on_disk_when_callers_resume(tmp_path: Path) -> None:
    from evolcoder.llm.cache import CallLog

    path = tmp_path / "group.sqlite"
    cache = CompletionCache(path)
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)
    seen_by_others: list[int] = []

    async def answer(i: int) -> None:
        key = f"k{i}"
        await cache.put_soon(key, "p", "m", ChatRequest.user(key), Completion(f"answer {i}", 1, 2, "stop"),
                             CallLog("s", "p", "m", key, False, 1, 2))
        with sqlite3.connect(path) as other:  # what a kill right now would leave
            seen_by_others.append(other.execute("SELECT COUNT(*) FROM completions WHERE key=?", (key,)).fetchone()[0])

    async def go() -> None:
        await asyncio.gather(*(answer(i) for i in range(40)))
        await answer(40)  # a later turn: its own commit

    asyncio.run(go())
    assert seen_by_others == [1] * 41
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 2
    assert cache.stats("s")[0]["requests"] == 41
    cache.close()
