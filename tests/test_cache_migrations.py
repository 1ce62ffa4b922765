"""The completion cache's schema is a numbered migrations table: old caches open and migrate.

The fixtures were written by the cache code of two earlier versions (the parent of
20fd379, before `calls.cause/retries` and `runs`; and main at 7179784, with the old
add-columns list): three paid completions and a cache-hit log row each.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.llm.base import ChatRequest, Completion
from evolcoder.llm.cache import MIGRATIONS, CallLog, CompletionCache, migrate

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMES = [name for name, _ in MIGRATIONS]


def _columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _applied(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


@pytest.mark.parametrize("fixture", ["cache_20fd379_parent.sqlite", "cache_7179784.sqlite"])
def test_an_old_cache_opens_migrates_and_keeps_its_answers(fixture: str, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    shutil.copy(FIXTURES / fixture, path)
    with CompletionCache(path) as cache:
        assert [cache.get(f"k{i}").text for i in range(3)] == ["answer 0", "answer 1", "answer 2"]
        assert cache.count_completions() == 3
        cache.log(CallLog(stage="round@2", provider="openai", model="fake", key="k1", cached=False,
                          cause="rate_limit", retries='{"rate_limit": 1}'))
        cache.log_run("round@2", 1.0, 2.0, 1, 0, 0)
        stats = {row["stage"]: row for row in cache.stats()}
    assert stats["round@1"]["requests"] == 3 and stats["round@1"]["cache_hits"] == 1  # paid, and free
    assert stats["round@2"]["retries_by_cause"] == {"rate_limit": 1}
    assert _columns(path, "calls")[-3:] == ["cause", "retries", "wait_s"]
    assert _applied(path) == NAMES


def test_migrating_twice_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    CompletionCache(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db) == []
    db.close()
    assert _applied(path) == NAMES


def test_a_fresh_cache_gets_every_step_in_order(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    assert migrate(db) == NAMES
    db.close()
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", "openai", "m", ChatRequest.user("q"), Completion("a", 1, 1, "stop"),
                  CallLog(stage="s", provider="openai", model="m", key="k", cached=False))
        assert cache.get("k").text == "a"


def test_processes_opening_one_old_cache_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    shutil.copy(FIXTURES / "cache_20fd379_parent.sqlite", path)
    code = "import sys; from evolcoder.llm.cache import CompletionCache; CompletionCache(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert _applied(path) == NAMES and _columns(path, "calls").count("cause") == 1
