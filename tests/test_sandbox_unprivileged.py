"""The sandbox without root: the hostile suite and `evolcoder execute`, run as nobody.

CI runs as root, so these tests drop to uid 65534 in a subprocess (tests/unprivileged.py).
As nobody the sandbox builds its jail in an unprivileged user namespace, where samples keep
the user's own uid; the checks are the ones a user without root cares about: their files
(in /tmp and their home) survive, a listener on 127.0.0.1 gets no connection, no process
is left, verdicts are right, and with no mechanism at all model code is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from unprivileged import NOBODY, REPO, run_as_nobody

from evolcoder.eval.problems import load_benchmark

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody; as an ordinary "
                                 "user, test_sandbox.py itself is the unprivileged run")]

MARK = "evolcoder-evil"  # the name hostile daemons give themselves, to find leftovers


@pytest.fixture
def nobody_home():
    """A home directory and a /tmp directory owned by nobody, removed afterwards."""
    made = [Path(tempfile.mkdtemp(prefix="evolcoder-nobody-", dir="/home" if os.path.isdir("/home") else None)),
            Path(tempfile.mkdtemp(prefix="evolcoder-nobody-tmp-"))]
    for path in made:
        os.chown(path, NOBODY, NOBODY)
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "PYTHONPATH": str(REPO / "src"), **extra}


def test_hostile_suite_holds_as_an_unprivileged_user(nobody_home):
    home, scratch = nobody_home
    report = scratch / "junit.xml"
    proc = run_as_nobody([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                          str(REPO / "tests" / "test_sandbox.py"), f"--junitxml={report}",
                          f"--basetemp={scratch / 'pytest'}"], _env(home), timeout=500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    outcome: dict[str, set[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        outcome.setdefault(case.get("name").split("[")[0], set()).add(kind)
    must_pass = ["test_user_namespace_jail_without_root", "test_a_pass_cannot_be_forged",
                 "test_cannot_write_or_delete_outside_its_directory", "test_the_users_own_files_survive",
                 "test_home_directory_is_hidden_without_root", "test_network_is_unreachable",
                 "test_setsid_daemons_and_grandchildren_do_not_survive", "test_fork_bomb_is_contained_and_reaped",
                 "test_hang_in_c_code_with_signals_blocked_is_killed", "test_proc_shows_only_the_samples_own_processes",
                 "test_parent_environment_is_not_visible", "test_sample_cannot_kill_the_harness",
                 "test_no_root_inside", "test_memory_limit", "test_disk_cannot_be_filled",
                 "test_infinite_loop_is_killed_at_the_deadline", "test_worker_death_is_reported_and_recovered"]
    assert {name: outcome.get(name) for name in must_pass} == {name: {"passed"} for name in must_pass}


def _hostile(problem, attack: str) -> dict:
    stub = problem.prompt + "    raise NotImplementedError\n"
    return {"task_id": problem.task_id, "solution": attack + "\n" + stub}


def _attacks(victims: list[Path], port: int) -> list[str]:
    rmtree = "import os, shutil\nos.chdir('/tmp')\nshutil.rmtree({!r}, ignore_errors=True)"
    connect = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=1).sendall(b'x')\n"
               "except OSError:\n    pass" % port)
    daemon = ("import ctypes, os, time\nfor _ in range(2):\n    if os.fork() == 0:\n        os.setsid()\n"
              "        if os.fork() == 0:\n            ctypes.CDLL(None).prctl(15, b%r, 0, 0, 0)\n"
              "            time.sleep(300)\n        os._exit(0)\ntime.sleep(0.2)" % MARK)
    return [rmtree.format(str(v)) for v in victims] + [connect, connect, daemon, daemon]


def _leftovers() -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{entry}/comm").read().strip() == MARK:
                found.append(int(entry))
        except OSError:
            pass
    return found


def _execute(home: Path, scratch: Path, samples: list[dict], name: str, *flags: str, **env: str):
    path = scratch / f"{name}.samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = scratch / f"{name}.results.jsonl"
    proc = run_as_nobody([sys.executable, "-m", "evolcoder.cli", "execute", "--benchmark", "dev",
                          "--samples", str(path), "--out", str(out), "-k", "1", "--workers", "2", *flags],
                         _env(home, **env), timeout=240)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else None
    return proc, rows


def test_execute_as_nobody_contains_model_code_and_refuses_without_a_jail(nobody_home):
    home, scratch = nobody_home
    os.chmod(scratch, 0o777)  # the nobody CLI writes its results here
    bench = load_benchmark("dev", None)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        def arm() -> tuple[list[dict], list[Path]]:
            victims = [home / "checkpoints", scratch / "checkpoints"]
            for victim in victims:
                victim.mkdir(exist_ok=True)
                (victim / "model.bin").write_text("weights")
                for p in (victim, victim / "model.bin"):
                    os.chown(p, NOBODY, NOBODY)
            attacks = _attacks(victims, server.getsockname()[1])
            samples = [_hostile(p, a) for p, a in zip(bench.problems, attacks)]
            samples += [{"task_id": p.task_id, "completion": p.canonical_solution}
                        for p in bench.problems[len(attacks):len(attacks) + 6]]
            return samples, victims

        samples, victims = arm()
        proc, rows = _execute(home, scratch, samples, "jailed")
        assert proc.returncode == 0, proc.stderr
        assert "containment: user-namespace jail" in proc.stdout
        assert [r["passed"] for r in rows] == [False] * 6 + [True] * 6
        time.sleep(0.5)
        assert all((v / "model.bin").read_text() == "weights" for v in victims)
        assert accepted == [] and _leftovers() == []
        metrics = json.loads((scratch / "jailed.results.jsonl.metrics.json").read_text())
        assert metrics["sandbox"]["containment"] == "user-namespace jail"

        # no mechanism at all (user namespaces forbidden): model code is refused ...
        proc, rows = _execute(home, scratch, samples, "refused", EVOLCODER_SANDBOX_DISABLE="userns")
        assert proc.returncode == 2 and rows is None
        assert "refusing to run model code with rlimits only" in proc.stderr
        assert "user namespaces" in proc.stderr and "sysctl" in proc.stderr and "--unsafe-rlimits-only" in proc.stderr
        # ... unless asked for; then the same samples do the damage the checks above look for
        proc, rows = _execute(home, scratch, samples, "unsafe", "--unsafe-rlimits-only",
                              EVOLCODER_SANDBOX_DISABLE="userns")
        assert proc.returncode == 0, proc.stderr
        assert "containment: rlimits only" in proc.stdout
        assert [r["passed"] for r in rows] == [False] * 6 + [True] * 6
        time.sleep(0.5)
        assert not any(v.exists() for v in victims)
        assert len(accepted) == 2 and len(_leftovers()) == 4
    finally:
        for pid in _leftovers():
            os.kill(pid, signal.SIGKILL)
        stop.set()
        server.close()
        for conn in accepted:
            conn.close()


def test_require_containment_refuses_before_any_work_without_a_jail(nobody_home):
    """What the eval stages call before generating: the same refusal, the params key named."""
    home, _ = nobody_home
    code = "from evolcoder.eval.sandbox import require_containment as r; import sys; print(r(sys.argv[1] == '1'))"
    for disable, unsafe, rc, text in (("", "0", 0, "user-namespace jail"), ("userns", "0", 1, "sandbox.unsafe_rlimits_only"),
                                      ("userns", "1", 0, "rlimits only")):
        proc = run_as_nobody([sys.executable, "-c", code, unsafe], _env(home, EVOLCODER_SANDBOX_DISABLE=disable),
                             timeout=60)
        assert proc.returncode == rc and text in proc.stdout + proc.stderr, (disable, unsafe, proc.stderr[-1500:])
