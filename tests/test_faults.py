"""Fault injection: an outage, garbage or a wrong port never becomes a finished dataset.

Every scenario runs the real stage scripts as subprocesses (one under real `dvc repro`)
against the loopback fake server with faults injected, re-runs after the fault is gone,
and checks that every item is accounted for, that no answered request was paid for twice,
and that the final train.jsonl equals the fault-free run's byte for byte.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dvcproject import default_params, make_project, out, ran, set_llm, sh
from fakeserver import FakeServer, Fault, default_responder

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2
QUESTIONS = [f"Write a Python function that returns the {w} of a list of {n} integers."
             for w, n in [("sum", "positive"), ("maximum", "negative"), ("median", "distinct"), ("mode", "small"),
                          ("product", "odd"), ("range", "even"), ("mean", "large"), ("minimum", "signed")]]


def _llm(base_url: str, **kw) -> dict:
    settings = {"provider": "openai", "model": "fake", "base_url": base_url, "concurrency": 4,
                "max_attempts": 8, "backoff_s": 0.02, "timeout_s": 1.0}
    settings.update(kw)
    return settings


def _params(seed: Path, llm: dict) -> dict:
    params = default_params()
    params["seed"]["path"] = str(seed)
    params["evol"]["rounds"] = ROUNDS
    set_llm(params, **llm)
    params["merge"]["decontaminate"] = ["humaneval"]
    return params


@dataclass
class Pipeline:
    """The stage scripts in dvc.yaml's order in one directory; a completed round is not re-run.

    Like DVC, it treats a round as done when its outputs exist, and stops at the first
    stage that fails, so a failed round must leave nothing behind for this to be correct.
    """

    root: Path
    seed: Path
    llm: dict
    log: list[tuple[str, int, float, str]] = field(default_factory=list)
    replan: bool = True

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.configure(**self.llm)

    def configure(self, **llm: object) -> None:
        self.llm.update(llm)
        params = _params(self.seed, self.llm)
        params["llm"]["cache"] = str(self.root / "cache.sqlite")
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        self.replan = True

    def _stage(self, name: str, *args: str) -> int:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", "params.yaml", *args],
                              cwd=self.root, env=env, capture_output=True, text=True, timeout=300)
        self.log.append((name, proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr))
        return proc.returncode

    def run(self) -> int:
        """Exit code of the first failing stage, or 0 when train.jsonl was written."""
        steps: list[tuple[str, ...]] = []
        if not (self.root / "data/seed/seed.jsonl").exists():
            steps.append(("seed", "--out", "data/seed/seed.jsonl", "--metrics", "metrics/seed.json"))
        if self.replan:  # like DVC: the plan follows the params
            steps.append(("plan", "--out-dir", "data/plan", "--slots", str(ROUNDS)))
        for r in range(1, ROUNDS + 1):
            if not (self.root / f"data/rounds/r{r}/stats.json").exists():
                prev = "data/seed/seed.jsonl" if r == 1 else f"data/rounds/r{r - 1}/pool.jsonl"
                steps.append(("round", "--plan", f"data/plan/round_{r}.json", "--prev", prev,
                              "--out-dir", f"data/rounds/r{r}", "--no-progress"))
        merge = ["--seed", "data/seed/seed.jsonl", "--out", "data/train/train.jsonl",
                 "--dropped", "data/train/dropped.jsonl", "--metrics", "metrics/merge.json",
                 "--evol-metrics", "metrics/evol.json", "--evol-plot", "metrics/evol_rounds.json",
                 "--plan-dir", "data/plan", "--rounds-dir", "data/rounds", "--card", "data/train/README.md"]
        steps.append(("merge", *merge))
        for name, *args in steps:
            rc = self._stage(name, *args)
            if rc:
                return rc
            self.replan = self.replan and name != "plan"
        return 0

    @property
    def last(self) -> str:
        return self.log[-1][3]

    def train(self) -> bytes:
        return (self.root / "data/train/train.jsonl").read_bytes()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_accounted(root: Path) -> dict[str, int]:
    """Every input item of every round has exactly one outcome, in input order; totals per status."""
    totals: Counter[str] = Counter()
    prev = root / "data/seed/seed.jsonl"
    for r in range(1, ROUNDS + 1):
        rdir = root / f"data/rounds/r{r}"
        items, outcomes = _lines(prev), _lines(rdir / "outcomes.jsonl")
        stats = json.loads((rdir / "stats.json").read_text())
        assert [o["id"] for o in outcomes] == [i["id"] for i in items]
        statuses = Counter(o["status"] for o in outcomes)
        assert set(statuses) <= {"kept", "eliminated", "failed"}
        assert (stats["kept"], stats["eliminated"], stats["failed"]) == (
            statuses["kept"], statuses["eliminated"], statuses["failed"])
        assert sum(statuses.values()) == stats["items_in"] == len(items)
        assert len(_lines(rdir / "kept.jsonl")) == statuses["kept"] and len(_lines(rdir / "pool.jsonl")) == len(items)
        totals.update(statuses)
        prev = rdir / "pool.jsonl"
    return dict(totals)


def _no_cached_empties(cache: Path) -> None:
    import sqlite3

    with sqlite3.connect(cache) as db:
        texts = [row[0] for row in db.execute("SELECT text FROM completions")]
    assert texts and all(t.strip() for t in texts)


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": "def f(xs):\n    return xs"}) + "\n"
                            for q in QUESTIONS))
    return path


@dataclass(frozen=True)
class Baseline:
    train: bytes
    answered: frozenset[str]
    totals: dict[str, int]


@pytest.fixture(scope="module")
def baseline(seed_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The fault-free run every scenario must reproduce."""
    with FakeServer() as server:
        pipe = Pipeline(tmp_path_factory.mktemp("baseline"), seed_file, _llm(server.base_url))
        assert pipe.run() == 0, pipe.last
        completed = server.stats()["completed"]
    totals = assert_accounted(pipe.root)
    assert totals.get("kept", 0) >= len(QUESTIONS) and not totals.get("failed")
    assert len(completed) == len(set(completed))
    return Baseline(pipe.train(), frozenset(completed), totals)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


def _paid_once(server: FakeServer, baseline: Baseline, stalls: int = 0) -> None:
    """Each request answered by the server reached the client once (a stall may lose one answer)."""
    completed = server.stats()["completed"]
    repeated = sum((Counter(completed) - Counter(set(completed))).values())
    assert repeated <= stalls, f"{repeated} answered requests were paid for again"
    assert set(completed) == baseline.answered


def test_total_outage_then_recovery_under_dvc(tmp_path: Path, seed_file: Path, baseline: Baseline,
                                              server: FakeServer, capsys: pytest.CaptureFixture) -> None:
    params = _params(seed_file, _llm(server.base_url, max_attempts=3))
    project = make_project(tmp_path, params)
    server.outage(Fault.error(500))

    down = sh(project, "dvc", "repro", "merge", check=False)
    during = server.count("/v1/chat/completions")
    assert down.returncode != 0 and "round 1 stopped" in out(down) and "HTTP 500" in out(down)
    assert "re-run" in out(down) and not list((project / "data/rounds").glob("r1/*"))
    assert during <= 4 * 3, "the breaker stops the round after the first request's attempts"

    server.recover()
    server.reset_counts()
    up = sh(project, "dvc", "repro", "merge", check=False)
    assert up.returncode == 0, out(up)
    assert {"round@1", "round@2", "merge"} <= ran(up)
    paid = server.count("/v1/chat/completions")
    _paid_once(server, baseline)
    assert paid == len(baseline.answered), "after recovery: one request per answer, none repeated"
    assert assert_accounted(project) == baseline.totals
    assert (project / "data/train/train.jsonl").read_bytes() == baseline.train
    with capsys.disabled():
        print(f"\n[outage] dvc repro during outage: exit {down.returncode}, {during} requests; "
              f"after recovery: exit {up.returncode}, {paid} requests ({len(baseline.answered)} in a fault-free "
              "run), none repeated")


def test_mid_round_outage_fails_the_round_and_a_rerun_completes_it(tmp_path: Path, seed_file: Path,
                                                                   baseline: Baseline, server: FakeServer) -> None:
    pipe = Pipeline(tmp_path, seed_file, _llm(server.base_url, max_attempts=3))
    server.outage(Fault.drop_connection(), after=5)
    assert pipe.run() == 4
    assert pipe.log[-1][0] == "round" and "re-run" in pipe.last and "connection" in pipe.last
    assert not (tmp_path / "data/rounds/r1").exists() or not any((tmp_path / "data/rounds/r1").iterdir())
    answered_before = len(server.stats()["completed"])
    assert answered_before == 5

    server.recover()
    assert pipe.run() == 0, pipe.last
    _paid_once(server, baseline)
    assert assert_accounted(tmp_path) == baseline.totals
    assert pipe.train() == baseline.train


def test_twenty_percent_mixed_faults_change_nothing(tmp_path: Path, seed_file: Path, baseline: Baseline,
                                                    server: FakeServer) -> None:
    faults = [Fault.error(500), Fault.error(503), Fault.rate_limit("0"), Fault.bad_json(), Fault.hang(2.0),
              Fault.drop_connection(), Fault.empty(), Fault.raw('{"error": "overloaded"}'),
              Fault.raw("<html>502 Bad Gateway</html>", "text/html")]
    server.chaos(0.2, faults, seed=7)
    pipe = Pipeline(tmp_path, seed_file, _llm(server.base_url))
    assert pipe.run() == 0, pipe.last
    injected = server.stats()["injected"]
    assert sum(injected.values()) >= 5, injected
    _paid_once(server, baseline, stalls=injected.get("stall", 0))
    assert assert_accounted(tmp_path) == baseline.totals
    _no_cached_empties(tmp_path / "cache.sqlite")
    assert pipe.train() == baseline.train


def test_empty_completions_are_retried_never_cached_and_never_eliminate(tmp_path: Path, seed_file: Path,
                                                                         baseline: Baseline,
                                                                         server: FakeServer) -> None:
    server.chaos(0.25, [Fault.empty()], seed=3)
    victim = QUESTIONS[2]

    def always_empty_for_victim(messages: list[dict]) -> str:
        content = messages[-1]["content"]
        return "" if victim in content and "increase the difficulty" in content else default_responder(messages)

    server.responder = always_empty_for_victim
    pipe = Pipeline(tmp_path, seed_file, _llm(server.base_url, max_attempts=10, backoff_s=0.005))
    assert pipe.run() == 4, "an answer that stays empty fails the round; it is not eliminated"
    assert "1 of 8 items failed after retries (empty 1" in pipe.last and "retries only the 1 failed" in pipe.last
    _no_cached_empties(tmp_path / "cache.sqlite")

    server.responder = default_responder
    assert pipe.run() == 0, pipe.last
    assert server.stats()["injected"].get("empty", 0) >= 3
    _paid_once(server, baseline)
    assert assert_accounted(tmp_path) == baseline.totals
    assert pipe.train() == baseline.train


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wrong_port_fails_in_seconds_then_the_right_one_completes(tmp_path: Path, seed_file: Path,
                                                                  baseline: Baseline, server: FakeServer,
                                                                  capsys: pytest.CaptureFixture) -> None:
    wrong = f"http://127.0.0.1:{_closed_port()}/v1"
    pipe = Pipeline(tmp_path, seed_file, _llm(wrong, max_attempts=6, backoff_s=1.0, concurrency=1))
    assert pipe.run() == 4
    name, rc, seconds, text = pipe.log[-1]
    assert name == "round" and wrong in text and "connection refused" in text
    assert seconds < 10, f"a closed port must fail in seconds, took {seconds:.1f} s"

    pipe.configure(base_url=server.base_url, backoff_s=0.02)
    assert pipe.run() == 0, pipe.last
    _paid_once(server, baseline)
    assert assert_accounted(tmp_path) == baseline.totals
    assert pipe.train() == baseline.train
    with capsys.disabled():
        print(f"\n[wrong port] round stage exit {rc} after {seconds:.2f} s (process start included)")


def test_failure_fraction_and_permanent_failures_decide_whether_a_round_is_done() -> None:
    from evolcoder.evolution.rounds import Outcome, RoundResult

    items = [{"id": f"i{n}", "instruction": f"task {n}"} for n in range(10)]
    ok = [Outcome(item, "eliminated", "constraints", "no information gain") for item in items[2:]]
    transient = Outcome(items[0], "failed", "constraints", "RequestFailed: gave up after 6 attempts: HTTP 500",
                        cause="server_error")
    rejected = Outcome(items[1], "failed", "constraints", "RequestFailed: HTTP 400", cause="invalid_request",
                       permanent=True)
    assert RoundResult(1, [rejected, *ok, Outcome(items[0], "kept", "constraints")]).incomplete() is None
    result = RoundResult(1, [transient, rejected, *ok])
    message = result.incomplete()
    assert message is not None and "1 of 10 items failed after retries (server_error 1" in message
    assert "1 were rejected by the endpoint" in message and "retries only the 1 failed" in message
    assert result.incomplete(0.05) is not None and result.incomplete(0.1) is None
    stats = result.stats()
    assert (stats["failed"], stats["failed_permanent"]) == (2, 1)
    assert stats["failed_by_cause"] == {"invalid_request": 1, "server_error": 1}
