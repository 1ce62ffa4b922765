"""Batch mode (`llm.mode: batch`) against the loopback fake Batch API, with real stage subprocesses.

What must hold: train.jsonl byte-identical to an online run's; no request answered twice
(the fake counts every answered line and chat call) whatever moment the round is SIGKILLed
at; failed and expired lines resubmitted alone; a missing Batch API and a rejected batch
reported before/with what the user needs to fix; `batch_wait: false` exits 5 and writes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakebatch import FakeBatchServer
from fakeserver import FakeServer
from test_faults import QUESTIONS, REPO, Pipeline, _llm, assert_accounted

BATCH = {"mode": "batch", "batch_poll_s": 0.05}


class KillablePipeline(Pipeline):
    """Pipeline whose current stage process can be SIGKILLed from the fake server's handler."""

    proc: subprocess.Popen | None = None

    def _stage(self, name: str, *args: str) -> int:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, str(REPO / "stages" / f"{name}.py"), "--params",
                                      "params.yaml", *args], cwd=self.root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        output, _ = self.proc.communicate(timeout=300)
        self.log.append((name, self.proc.returncode, time.perf_counter() - start, output))
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": "def f(xs):\n    return xs"}) + "\n"
                            for q in QUESTIONS))
    return path


@pytest.fixture(scope="module")
def online(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, frozenset[str]]:
    """The online run every batch run must reproduce byte for byte."""
    with FakeServer() as server:
        pipe = Pipeline(tmp_path_factory.mktemp("online"), seed, _llm(server.base_url))
        assert pipe.run() == 0, pipe.last
        completed = server.stats()["completed"]
    assert len(completed) == len(set(completed))
    return pipe.train(), frozenset(completed)


@pytest.fixture
def fake() -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        yield srv


def _answered_once(server: FakeBatchServer, expected: frozenset[str]) -> None:
    completed = server.stats()["completed"]
    twice = {k: n for k, n in Counter(completed).items() if n > 1}
    assert not twice, f"{len(twice)} requests answered more than once"
    assert set(completed) == expected
    assert server.count("/v1/chat/completions") == 0, "batch mode made online calls"


def test_batch_run_is_byte_identical_and_a_rerun_pays_nothing(tmp_path: Path, seed: Path, online, fake) -> None:
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH))
    assert pipe.run() == 0, pipe.last
    assert pipe.train() == online[0]
    _answered_once(fake, online[1])
    assert_accounted(tmp_path)
    batches = len(fake.batches)
    assert batches >= 2 * 2, "one batch per phase (evolve, answer) and round at least"
    stats = json.loads((tmp_path / "data/rounds/r1/stats.json").read_text())
    assert stats["llm_batches"] >= 2 and stats["llm_requests"] > 0
    for r in (1, 2):  # a re-run of the rounds replays the cache: no new batch, no call
        (tmp_path / f"data/rounds/r{r}/stats.json").unlink()
    assert pipe.run() == 0, pipe.last
    assert len(fake.batches) == batches and pipe.train() == online[0]


MOMENTS = ["upload", "create", "created", "retrieve", "content"]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_at_each_moment_never_pays_twice(tmp_path: Path, seed: Path, online, fake, moment: str) -> None:
    """upload: before the file exists; create: uploaded, no batch; created: batch made, id never
    returned; retrieve: while polling; content: while downloading the answers."""
    pipe = KillablePipeline(tmp_path, seed, _llm(fake.base_url, **BATCH))
    kills = []

    def hook(at: str) -> None:
        if at == moment and len(kills) < 2:  # two kills: round 1's first phase and a later one
            kills.append(at)
            pipe.kill()

    fake.hook = hook
    for _ in range(6):
        if pipe.run() == 0:
            break
        assert pipe.log[-1][1] == -signal.SIGKILL, pipe.last
    assert len(kills) == 2, kills
    assert pipe.train() == online[0]
    _answered_once(fake, online[1])
    assert_accounted(tmp_path)


def test_failed_and_expired_lines_are_resubmitted_alone(tmp_path: Path, seed: Path, online, fake) -> None:
    flaky = {"n": 0}

    def fail_first_three(body: dict) -> bool:  # lines 1-3 of the second batch (the first one expires)
        flaky["n"] += 1
        return 3 < flaky["n"] <= 6

    fake.fail_lines = fail_first_three
    fake.expire_next, fake.expire_keep = True, 3
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH))
    assert pipe.run() == 0, pipe.last
    assert pipe.train() == online[0]
    _answered_once(fake, online[1])
    first, second, third = (fake.batches[i] for i in fake.order[:3])
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 3
    assert second["request_counts"]["failed"] == 3
    done1, lost1 = _ids(fake, first["output_file_id"]), _ids(fake, first["error_file_id"])
    failed2 = _ids(fake, second["error_file_id"])
    assert len(lost1) == len(QUESTIONS) - 3
    assert lost1 <= _ids(fake, second["input_file_id"]) and not done1 & _ids(fake, second["input_file_id"]), \
        "the expired lines went again, the completed ones did not"
    assert failed2 <= _ids(fake, third["input_file_id"]), "then the failed lines"


def _ids(fake: FakeBatchServer, file_id: str | None) -> set[str]:
    data = fake.files[file_id] if file_id else b""
    return {json.loads(line)["custom_id"] for line in data.splitlines() if line.strip()}


def test_no_batch_api_fails_before_any_paid_call(tmp_path: Path, seed: Path, fake) -> None:
    fake.no_batch_api = True
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH))
    assert pipe.run() == 2
    assert "llm.mode" in pipe.last and "404" in pipe.last
    assert fake.count("/v1/files") == 0 and fake.count("/v1/chat/completions") == 0
    assert not (tmp_path / "data/rounds/r1/stats.json").exists()


def test_rejected_batch_names_lines_and_errors(tmp_path: Path, seed: Path, fake) -> None:
    fake.reject_next = True
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH))
    assert pipe.run() == 2
    assert "failed validation" in pipe.last and "line 1" in pipe.last and f"line {len(QUESTIONS)}" in pipe.last
    assert "max_tokens is too large" in pipe.last


def test_batch_wait_false_exits_5_then_a_rerun_consumes(tmp_path: Path, seed: Path, online, fake) -> None:
    fake.polls = 3
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH, batch_wait=False))
    assert pipe.run() == 5
    assert "batches in flight; run `dvc repro` again later" in pipe.last
    assert not (tmp_path / "data/rounds/r1/stats.json").exists()
    for _ in range(20):
        if pipe.run() == 0:
            break
    assert pipe.train() == online[0]
    _answered_once(fake, online[1])


def test_stalled_create_is_adopted_not_resubmitted(tmp_path: Path, seed: Path, online, fake) -> None:
    fake.stall_create = 3.0  # longer than llm.timeout_s: the client never sees the create's answer
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH, timeout_s=1.0))
    assert pipe.run() == 0, pipe.last
    assert pipe.train() == online[0]
    _answered_once(fake, online[1])
    assert fake.count("/v1/batches:create") == len(fake.batches), "every create made exactly one batch"
    assert fake.count("/v1/batches:list") > 2, "one reconcile per round stage, plus the lost create looked up by tag"


def test_eval_generation_through_batches_equals_online(tmp_path: Path) -> None:
    """generate.backend openai with llm.mode batch: /v1/completions lines, the same samples as online."""
    from evolcoder.config import GenerateConfig, LLMConfig
    from evolcoder.eval.generate import OpenAIBackend, Request

    prompts = [Request(f"def f{i}(x):\n    \"\"\"Return x times {i}.\"\"\"\n", stops=("\ndef ",)) for i in range(6)]
    with FakeBatchServer() as fake:
        settings = GenerateConfig(backend="openai", base_url=fake.base_url, max_new_tokens=64)
        online = OpenAIBackend(fake.base_url, "served", cache_path=tmp_path / "online.sqlite").generate(prompts, settings)
        assert fake.count("/v1/completions") == 6
        batch = OpenAIBackend(fake.base_url, "served", cache_path=tmp_path / "batch.sqlite",
                              llm=LLMConfig(mode="batch", batch_poll_s=0.05)).generate(prompts, settings)
        assert fake.count("/v1/completions") == 6, "batch mode made online calls"
        assert len(fake.batches) == 1 and next(iter(fake.batches.values()))["endpoint"] == "/v1/completions"
    assert batch == online


def test_max_calls_counts_batch_lines(tmp_path: Path, seed: Path, fake) -> None:
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH, max_calls=len(QUESTIONS) - 1))
    assert pipe.run() == 3
    assert "llm.max_calls" in pipe.last and not fake.batches and fake.count("/v1/files") == 0


def test_reconcile_reads_every_page_of_batches_list(tmp_path: Path, fake) -> None:
    """An orphan on the last page of `batches.list` is still found and adopted."""
    import asyncio

    from evolcoder.config import LLMConfig
    from evolcoder.llm.batch import Batcher
    from evolcoder.llm.batchstore import BatchStore
    from evolcoder.llm.client import make_client

    fake.page_size = 2
    cfg = LLMConfig(provider="openai", model="fake", base_url=fake.base_url, cache=str(tmp_path / "c.sqlite"),
                    mode="batch")
    orphan = fake._create({"input_file_id": fake._store(b""), "endpoint": "/v1/chat/completions",
                           "metadata": {"evolcoder_tag": "evolcoder-orphan"}})
    for _ in range(5):  # newer batches push the orphan to the third page
        fake._create({"input_file_id": fake._store(b""), "endpoint": "/v1/chat/completions", "metadata": {}})

    async def go() -> None:
        client = make_client(cfg, stage="t")
        async with client:
            batcher = Batcher(client, cfg, progress=False)
            batcher.store.record_intent("evolcoder-orphan", endpoint=batcher.endpoint, stage="t", model="fake",
                                        url="/v1/chat/completions", sha256="0", nbytes=0, keys=["k"],
                                        reserved_usd=0.0)
            with batcher.store._tx():  # as if written by a process that has died since
                batcher.store._db.execute("UPDATE batch_jobs SET pid=NULL")
            await batcher.reconcile()
            batcher.close()

    asyncio.run(go())
    store = BatchStore(tmp_path / "c.sqlite")
    [job] = [j for j in store.open_jobs(f"{fake.base_url}|openai:fake")]
    assert job.batch_id == orphan["id"] and fake.count("/v1/batches:list") == 3


def test_a_line_that_always_fails_is_retried_max_attempts_then_fails_the_round(tmp_path: Path, seed: Path,
                                                                               fake) -> None:
    doomed = QUESTIONS[0]
    fake.fail_lines = lambda body: doomed in json.dumps(body)
    pipe = Pipeline(tmp_path, seed, _llm(fake.base_url, **BATCH, max_attempts=2))
    assert pipe.run() == 4, pipe.last
    assert "batch_failed" in pipe.last and not (tmp_path / "data/rounds/r1/stats.json").exists()
    tries = sum(doomed in fake.files[b["input_file_id"]].decode() for b in fake.batches.values())
    assert tries == 2, "one line, sent max_attempts times, then given up"


@pytest.mark.slow
def test_under_dvc_batch_wait_false_records_nothing_then_repro_completes(tmp_path: Path, seed: Path, online,
                                                                        fake) -> None:
    """`dvc repro` with batch_wait false fails (exit 5 in the stage), dvc.lock records no round;
    a later `dvc repro` consumes the batches already made and finishes with the online bytes."""
    from dvcproject import make_project, out, sh
    from test_faults import _params

    fake.polls = 1000  # the batches stay in progress until the test lets them finish
    project = make_project(tmp_path, _params(seed, _llm(fake.base_url, **BATCH, batch_wait=False)))
    first = sh(project, "dvc", "repro", "merge", check=False)
    assert first.returncode != 0 and "batches in flight; run `dvc repro` again later" in out(first)
    lock = project / "dvc.lock"
    assert not lock.exists() or "round@1" not in lock.read_text()
    made = len(fake.batches)
    assert made >= 1
    fake.polls = 1
    for batch in fake.batches.values():
        batch["_polls"] = 0
    for _ in range(8):
        again = sh(project, "dvc", "repro", "merge", check=False)
        if again.returncode == 0:
            break
        assert "batches in flight" in out(again), out(again)
    assert (project / "data/train/train.jsonl").read_bytes() == online[0]
    _answered_once(fake, online[1])
