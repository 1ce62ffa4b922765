"""`llm.budget_usd` (a hard dollar cap held by reservations) and `evolcoder estimate`, end to end.

Real stage subprocesses against the loopback fake (online and Batch API); what is paid is
read back from the cache's token counts at the configured price, so "never above the cap"
and "the upper bound holds" are checked against what the server really answered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fakebatch import FakeBatchServer
from fakeserver import FakeServer
from test_faults import QUESTIONS, REPO, Pipeline, _llm

from evolcoder.llm.base import ChatRequest
from evolcoder.llm.pricing import Prices, prices, prompt_bound, require_prices, worst_case_usd

PRICE = {"prompt": 0.01, "completion": 0.02}  # per 1k fake tokens (words): round numbers to check by hand


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": "def f(xs):\n    return xs"}) + "\n"
                            for q in QUESTIONS))
    return path


def _paid_usd(cache: Path, stage: str | None = None) -> float:
    """Dollars of every paid (uncached) call logged, at PRICE."""
    where = " AND stage=?" if stage else ""
    with sqlite3.connect(cache) as db:
        p, c = db.execute(f"SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0) FROM calls "
                          f"WHERE cached=0 AND error IS NULL{where}", (stage,) if stage else ()).fetchone()
    return (p * PRICE["prompt"] + c * PRICE["completion"]) / 1000


def _estimate(root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "evolcoder.cli", "estimate", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_prompt_bound_holds_for_byte_level_tokens() -> None:
    request = ChatRequest(messages=(("system", "Be terse."), ("user", "Ünïcödé ✓ " * 50)))
    bytes_total = sum(len(c.encode()) for _, c in request.messages)
    assert prompt_bound(request) >= bytes_total + 2 * 3  # every token is at least one byte
    price = Prices(0.5, 1.0, "test")
    assert worst_case_usd(request, price) == pytest.approx((prompt_bound(request) * 0.5 + 2048 * 1.0) / 1000)


def test_price_table_and_overrides() -> None:
    table = prices("openai", "gpt-4o-mini-2024-07-18", None)
    assert table is not None and table.prompt == pytest.approx(0.00015) and table.batch_factor == 0.5
    assert prices("openai", "gpt-4o-2024-08-06", None).prompt == pytest.approx(0.0025)  # longest prefix wins
    local = prices("openai", "mine", {"prompt": 1.0, "completion": 2.0}, base_url="http://127.0.0.1:8000/v1")
    assert local is not None and local.batch_factor == 1.0  # no discount promised by another endpoint
    with pytest.raises(Exception, match="llm.price_per_1k"):
        require_prices("openai", "my-finetune", None)


def test_budget_stops_at_the_cap_exit_3_nothing_written(tmp_path: Path, seed: Path) -> None:
    with FakeServer() as server:
        pipe = Pipeline(tmp_path, seed, _llm(server.base_url, price_per_1k=PRICE, budget_usd=0.05))
        assert pipe.run() == 3, pipe.last
        assert "llm.budget_usd=0.05" in pipe.last and "spent $" in pipe.last and "could cost up to" in pipe.last
        assert "exceeds llm.budget_usd" in pipe.last, "the upper bound was announced before the first call"
        assert "The rest of round 1" in pipe.last and "would cost about $" in pipe.last
        print("\n" + pipe.last)
        assert not (tmp_path / "data/rounds/r1/stats.json").exists()
        spent = _paid_usd(tmp_path / "cache.sqlite", "round@1")
        assert 0 < spent <= 0.05, spent
        pipe.configure(budget_usd=None)  # what was paid stays cached: the rest completes
        before = server.count("/v1/chat/completions")
        assert pipe.run() == 0, pipe.last
        assert server.count("/v1/chat/completions") > before


def test_unknown_price_with_a_budget_is_a_params_error(tmp_path: Path, seed: Path) -> None:
    with FakeServer() as server:
        pipe = Pipeline(tmp_path, seed, _llm(server.base_url, budget_usd=1.0))
        assert pipe.run() == 2
        assert "llm.price_per_1k" in pipe.last and server.count("/v1/chat/completions") == 0


def test_budget_holds_for_batches(tmp_path: Path, seed: Path) -> None:
    with FakeBatchServer() as fake:
        pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, mode="batch", batch_poll_s=0.05, price_per_1k=PRICE,
                                             budget_usd=0.05))
        assert pipe.run() == 3, pipe.last
        assert "next batch of" in pipe.last
        assert _paid_usd(tmp_path / "cache.sqlite", "round@1") <= 0.05


def test_estimate_bounds_a_measured_run_and_counts_only_the_rest(tmp_path: Path, seed: Path) -> None:
    with FakeServer() as server:
        pipe = Pipeline(tmp_path, seed, _llm(server.base_url, price_per_1k=PRICE))
        fresh = _estimate(tmp_path)
        assert fresh["requests"] > 0 and fresh["cached_requests"] == 0
        assert {"requests", "prompt_tokens", "completion_tokens", "usd", "usd_upper"} <= set(fresh)
        assert pipe.run() == 0, pipe.last
        actual = _paid_usd(tmp_path / "cache.sqlite")
        answered = server.count("/v1/chat/completions")
    print(f"\nestimate (no history) vs measured: requests {fresh['requests']} (upper) vs {answered}; "
          f"usd expected {fresh['usd']:.4f} upper {fresh['usd_upper']:.4f} vs actual {actual:.4f}")
    assert fresh["requests"] >= answered and fresh["usd_upper"] >= actual
    again = _estimate(tmp_path)  # everything is cached now: nothing left to pay
    assert again["requests"] == 0 and again["usd"] == 0 and again["cached_requests"] > 0
    assert again["completion_source"].startswith("mean of")


def test_estimate_with_history_is_close_to_the_measured_run(tmp_path: Path, seed: Path) -> None:
    """With completions of this model in the cache, the expected figure is an estimate, not a bound."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"instruction": q.replace("Python", "Rust")}) + "\n" for q in QUESTIONS))
    with FakeServer() as server:
        first = Pipeline(tmp_path / "a", seed, _llm(server.base_url, price_per_1k=PRICE))
        assert first.run() == 0, first.last
        pipe = Pipeline(tmp_path / "b", other, _llm(server.base_url, price_per_1k=PRICE))
        params = (tmp_path / "b" / "params.yaml")
        params.write_text(params.read_text().replace(str(tmp_path / "b" / "cache.sqlite"),
                                                     str(tmp_path / "a" / "cache.sqlite")))
        before = _paid_usd(tmp_path / "a" / "cache.sqlite")
        rc = pipe._stage("seed", "--out", "data/seed/seed.jsonl", "--metrics", "metrics/seed.json")
        assert rc == 0
        est = _estimate(tmp_path / "b")  # the seed stage's items (with their ids), rounds not run
        assert pipe.run() == 0, pipe.last
        actual = _paid_usd(tmp_path / "a" / "cache.sqlite") - before
    error = (est["usd"] - actual) / actual
    print(f"\nestimate (history: {est['completion_source']}) vs measured: usd expected {est['usd']:.4f} "
          f"(batch {est['usd_batch']:.4f}), upper {est['usd_upper']:.4f}, actual {actual:.4f}: error {error:+.1%}")
    assert est["usd_upper"] >= actual and est["completion_source"].startswith("mean of")
