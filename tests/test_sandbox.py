"""Hostile suite: each containment promise of `evolcoder.eval.sandbox`, attacked for real.

Every test is bounded (pytest timeout, a sandbox with small limits), so a broken sandbox
fails a test instead of taking the machine down. As root it checks the root jail; run by
an ordinary user (test_sandbox_unprivileged.py does that from CI, as nobody) it checks the
user-namespace jail, where samples keep the user's own uid.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from evolcoder.eval.sandbox import ROOT_JAIL, USERNS_JAIL, Limits, Sandbox, decode, digest, encode

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits(timeout_s=2.0, memory_mb=256, disk_mb=8, nproc=64, output_bytes=4096)
ROOT = os.geteuid() == 0
SECRET = "evolcoder-test-secret-7f3a"
MY_SRC = os.fsencode(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def sandbox():
    os.environ["EVOLCODER_TEST_SECRET"] = SECRET
    try:
        with Sandbox(2, LIMITS) as box:
            yield box
    finally:
        os.environ.pop("EVOLCODER_TEST_SECRET", None)


def run(box: Sandbox, code: str, **extra):
    return box.run({"kind": "python", "code": textwrap.dedent(code), **extra})


def _status(pid: str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


def sandbox_processes(box: Sandbox) -> list[int]:
    """Host pids left by samples: owned by a sandbox uid (root jail), or, when samples run
    with our own uid, forks of a worker that are not the workers themselves."""
    uids = {str(h.uid) for h in box._all}
    holders = {str(h.proc.pid) for h in box._all}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry in holders:
            continue
        try:
            status = _status(entry)
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        uid = status["Uid"].split()[0]
        worker = status["PPid"] in holders  # the user-namespace worker under its holder
        ours = not ROOT and uid == str(os.getuid()) and b"_worker_main" in cmdline and MY_SRC in cmdline
        if uid in uids or (ours and not worker):
            found.append(int(entry))
    return found


def jailed(box: Sandbox) -> bool:
    return box.containment in (ROOT_JAIL, USERNS_JAIL)


def test_full_isolation_is_available_as_root(sandbox):
    if not ROOT:
        pytest.skip("containment features need root; warnings are checked below")
    assert {"pidns", "netns", "chroot", "readonly-root", "uid-drop", "cgroups"} <= set(sandbox.features)
    assert sandbox.warnings == ()
    assert sandbox.containment == ROOT_JAIL


def test_user_namespace_jail_without_root(sandbox):
    if ROOT:
        pytest.skip("as root the root jail is used; test_sandbox_unprivileged.py runs this suite as nobody")
    assert sandbox.containment == USERNS_JAIL, sandbox.warnings
    assert {"userns", "pidns", "netns", "ipcns", "chroot", "readonly-root"} <= set(sandbox.features)
    assert sandbox.warnings == ()


def test_honest_programs_pass_and_failures_fail(sandbox):
    assert run(sandbox, "assert sum(range(10)) == 45").passed
    bad = run(sandbox, "assert 1 == 2, 'nope'")
    assert bad.status == "failed" and "AssertionError" in bad.reason


@pytest.mark.parametrize("code", [
    "import os\nos._exit(0)",
    "import sys\nsys.exit(0)",
    "raise SystemExit(0)",
    "import atexit, os\natexit.register(lambda: os._exit(0))\nassert False",
    "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\nassert False",
    "print('passed')\nprint('PASS')\nassert False",
    # writing fake verdicts on every descriptor does not help without the per-sample token
    "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'PASS 0000\\n')\n    except OSError: pass\nassert False",
    # a forked copy of the program finishing normally must not report for the harness
    "import os, time\nif os.fork() != 0:\n    time.sleep(0.5)\n    assert False",
    "import threading, os, time\nthreading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(1)\nassert False",
])
def test_a_pass_cannot_be_forged(sandbox, code):
    result = run(sandbox, code)
    assert not result.passed, result


def test_infinite_loop_is_killed_at_the_deadline(sandbox):
    start = time.monotonic()
    result = run(sandbox, "while True: pass", timeout=1.0)
    assert result.status == "timed out"
    assert time.monotonic() - start < 5


def test_hang_in_c_code_with_signals_blocked_is_killed(sandbox):
    code = """
        import ctypes, signal
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        ctypes.CDLL(None).sleep(1000)
    """
    start = time.monotonic()
    result = run(sandbox, code, timeout=1.0)
    assert result.status == "timed out"
    assert time.monotonic() - start < 5
    assert not sandbox_processes(sandbox)


def test_memory_limit(sandbox):
    result = run(sandbox, "x = bytearray(1 << 30)\nprint(len(x))")
    assert result.status == "failed" and "MemoryError" in result.reason
    # a forked child that allocates is bounded too (rlimit is inherited, cgroup is shared)
    forked = run(sandbox, """
        import os
        pid = os.fork()
        if pid == 0:
            blocks = []
            while True:
                blocks.append(bytearray(16 << 20))
        _, status = os.waitpid(pid, 0)
        assert status == 0
    """, timeout=10)
    assert not forked.passed and forked.status != "timed out"


def test_memory_is_capped_across_processes(sandbox):
    """Each process stays under its own rlimit; together they exceed the worker's cgroup."""
    if "cgroups" not in sandbox.features:
        pytest.skip("no memory cgroup on this machine (a warning says so)")
    result = run(sandbox, """
        import os
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = bytearray(180 << 20)  # zero-filled, so really resident
                import time
                time.sleep(1)
                os._exit(0)
            pids.append(pid)
        assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    """, timeout=10)
    assert not result.passed, result


def test_disk_cannot_be_filled(sandbox):
    result = run(sandbox, """
        with open("big", "wb") as f:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
    """)
    assert result.status == "failed"
    assert "limit" in result.reason or "No space" in result.reason or "Errno" in result.reason


def test_fork_bomb_is_contained_and_reaped(sandbox):
    # bounded on purpose: at most 2**10 processes even if nothing limited it
    result = run(sandbox, """
        import os, time
        root = os.getpid()
        r, w = os.pipe()
        for _ in range(10):
            try:
                os.fork()
            except OSError:
                pass
        if os.getpid() != root:
            os.write(w, b"x")
            time.sleep(1)
            os._exit(0)
        time.sleep(0.5)
        os.set_blocking(r, False)
        children = len(os.read(r, 4096))
        assert 10 <= children < 64, children  # root made 10; the pids limit capped the rest
    """, timeout=5.0)
    assert result.passed, result
    assert not sandbox_processes(sandbox)
    assert run(sandbox, "assert True").passed


def test_setsid_daemons_and_grandchildren_do_not_survive(sandbox, tmp_path):
    result = run(sandbox, """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.setsid()
                    signal_ignored = __import__("signal")
                    signal_ignored.signal(signal_ignored.SIGTERM, signal_ignored.SIG_IGN)
                    time.sleep(1000)
                os._exit(0)
        time.sleep(0.2)
    """)
    assert result.passed, result
    time.sleep(0.2)
    assert not sandbox_processes(sandbox)


def test_cannot_write_or_delete_outside_its_directory(sandbox, tmp_path):
    assert jailed(sandbox), sandbox.warnings
    shared = tmp_path / "world_writable"
    shared.mkdir()
    shared.chmod(0o777)
    victim = shared / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o666)
    code = f"""
        import os
        errors = 0
        for attempt in (lambda: open({str(shared / 'new.txt')!r}, "w"),
                        lambda: open({str(victim)!r}, "w"),
                        lambda: os.remove({str(victim)!r}),
                        lambda: open("/tmp/../etc/evil", "w"),
                        lambda: open("/tmp/evil", "w"),
                        lambda: open({os.getcwd() + '/evil'!r}, "w")):
            try:
                attempt()
            except OSError:
                errors += 1
        assert errors == 6, errors
        open("mine.txt", "w").write("ok")  # its own directory is writable
    """
    result = run(sandbox, code)
    assert result.passed, result
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in shared.iterdir()) == ["victim.txt"]


def test_network_is_unreachable(sandbox):
    assert jailed(sandbox), sandbox.warnings
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        result = run(sandbox, f"""
            import socket
            for host in ("127.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=1)
                except OSError:
                    continue
                raise SystemError("connected to " + host)
        """, timeout=5)
        assert result.passed, result
        assert accepted == []
    finally:
        server.close()


def test_parent_environment_is_not_visible(sandbox):
    result = run(sandbox, f"""
        import os
        assert not any({SECRET!r} in v for v in os.environ.values()), "secret in environ"
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    data = open(f"/proc/{{pid}}/environ", "rb").read()
                except OSError:
                    continue
                assert {SECRET!r}.encode() not in data, "secret readable via /proc/" + pid
    """)
    assert result.passed, result


def test_proc_shows_only_the_samples_own_processes(sandbox):
    assert jailed(sandbox), sandbox.warnings
    result = run(sandbox, """
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        assert len(pids) == 1 and int(pids[0]) != os.getppid(), pids
    """)
    assert result.passed, result


def test_sample_cannot_kill_the_harness(sandbox):
    result = run(sandbox, """
        import os, signal
        for target in (os.getppid(), 1, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        for pid in range(2, 4000):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    """)
    assert result.status in ("passed", "failed")
    assert all(h.proc.poll() is None for h in sandbox._all), "a worker was killed"
    assert run(sandbox, "assert True").passed


def test_no_root_inside(sandbox):
    result = run(sandbox, """
        import os
        assert os.getuid() != 0 and os.geteuid() != 0
        try:
            os.setuid(0)
        except OSError:  # EPERM after the uid drop; EINVAL in a user namespace (0 is unmapped)
            pass
        else:
            raise SystemError("became root")
    """)
    assert result.passed, result


def test_unbounded_output_is_capped(sandbox):
    result = run(sandbox, "import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000)\n")
    assert result.passed
    assert len(result.output) <= LIMITS.output_bytes
    flood = run(sandbox, "while True:\n    print('y' * 1000)", timeout=1.0)
    assert flood.status == "timed out" and len(flood.output) <= LIMITS.output_bytes


def test_io_jobs_return_plain_data_and_refuse_lying_objects(sandbox):
    code = textwrap.dedent("""
        class Liar:
            def __eq__(self, other):
                return True
        def f(kind):
            return {"tuple": (1, 2.5, "a"), "set": {1, 2}, "liar": Liar(), "big": 10 ** 5000}[kind]
    """)
    result = sandbox.run({"kind": "io", "code": code, "entry_point": "f",
                          "inputs": encode([["tuple"], ["set"], ["liar"], ["big"]])})
    assert result.passed
    first, second, third, fourth = result.data
    assert decode(first["ok"]) == (1, 2.5, "a") and type(decode(first["ok"])) is tuple
    assert decode(second["ok"]) == {1, 2}
    assert "error" in third and "Liar" in third["error"]
    assert decode(fourth["ok"]) == 10 ** 5000


def test_io_outputs_are_judged_as_they_arrive_and_the_sample_stops_at_the_first_wrong_one(sandbox):
    code = textwrap.dedent("""
        import time
        def f(x):
            if x == 2:
                time.sleep(30)
            return x * 10 if x != 1 else -1
    """)
    expected = [{"ok": encode(0)}, {"ok": encode(10)}, {"ok": encode(20)}]
    job = {"kind": "io", "code": code, "entry_point": "f", "inputs": encode([[0], [1], [2]]),
           "expected": expected, "oracle": {"task_id": "T/0", "entry_point": "f"}, "timeout": 20}
    result = sandbox.run(job)
    assert (result.status, result.reason, result.data) == ("failed", "wrong output on input 1", {"ok_through": 1})
    assert result.duration_s < 5  # killed at input 1, never reached the sleep on input 2
    hang = sandbox.run({**job, "code": code.replace("-1", "x * 10"), "input_limits": [1.0, 1.0, 1.0]})
    assert (hang.status, hang.data) == ("timed out", {"ok_through": 2}) and hang.duration_s < 5
    flood = textwrap.dedent("""
        import os
        def f(x):
            chunk = b"x" * (1 << 20)
            for fd in range(3, 64):  # find the result pipe and flood it without a newline
                try:
                    for _ in range(300):
                        os.write(fd, chunk)
                except OSError:
                    pass
    """)
    flooded = sandbox.run({**job, "code": flood})
    assert (flooded.status, flooded.reason) == ("failed", "input 0: malformed output line")


def test_encoding_round_trip_and_digest():
    value = [None, True, 3, -1.5, float("inf"), "s", (1, (2,)), {3}, frozenset({4}), {"k": [1]}, 1 + 2j, b"\x00"]
    assert decode(encode(value)) == value
    assert digest(encode({"b", "a", "c"})) == digest(encode({"c", "b", "a"}))
    with pytest.raises(TypeError):
        encode(object())


def test_worker_death_is_reported_and_recovered(sandbox):
    victim = sandbox._all[0]
    victim.proc.kill()
    victim.proc.wait()
    results = [sandbox.run({"kind": "python", "code": "assert True"}) for _ in range(4)]
    assert any(r.status == "error" and "worker died" in r.reason for r in results)
    assert results[-1].passed
    assert run(sandbox, "assert True").passed


def test_pool_startup_and_many_samples_are_quick(sandbox):
    """Not a timing assertion: checks that a batch completes and keeps input order."""
    jobs = [{"kind": "python", "code": f"assert {i} == {i}" if i % 3 else "assert False"} for i in range(60)]
    results = sandbox.map(jobs)
    assert [r.passed for r in results] == [bool(i % 3) for i in range(60)]


def test_the_users_own_files_survive(sandbox, tmp_path):
    """The measured escape without root: chdir to /tmp and rmtree a directory of the user's
    own files (same uid as the sample), here and in the home directory."""
    victims = [tmp_path / "checkpoints"]
    if not ROOT:
        victims.append(Path.home() / f"evolcoder-victim-{os.getpid()}")
    for victim in victims:
        victim.mkdir()
        (victim / "model.bin").write_text("weights")
    try:
        result = run(sandbox, f"""
            import os, shutil
            os.chdir("/tmp")
            for victim in {[str(v) for v in victims]!r}:
                shutil.rmtree(victim, ignore_errors=True)
                shutil.rmtree(os.path.relpath(victim, "/tmp"), ignore_errors=True)
                try:
                    open(victim + "/model.bin", "w").write("gone")
                except OSError:
                    pass
            assert not any(os.path.exists(v + "/model.bin") for v in {[str(v) for v in victims]!r})
        """)
        assert result.passed, result  # the sample does not even see them
        assert all((v / "model.bin").read_text() == "weights" for v in victims)
    finally:
        for victim in victims[1:]:
            shutil.rmtree(victim, ignore_errors=True)


def test_home_directory_is_hidden_without_root(sandbox):
    if ROOT:
        pytest.skip("as root samples run as another uid; /root is checked below")
    secret = Path.home() / f"evolcoder-secret-{os.getpid()}"
    secret.write_text(SECRET)
    try:
        result = run(sandbox, f"""
            import os
            assert not os.path.exists({str(secret)!r})
            for top, dirs, files in os.walk({str(Path.home())!r}):
                for name in files:
                    try:
                        assert {SECRET!r} not in open(os.path.join(top, name)).read()
                    except OSError:
                        pass
        """)
        assert result.passed, result
    finally:
        secret.unlink()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux sandbox")
def test_private_root_home_is_hidden(sandbox):
    if not ROOT or stat.S_IMODE(os.stat("/root").st_mode) & 0o005:
        pytest.skip("/root is not private here")
    result = run(sandbox, "import os\nprint(sorted(os.listdir('/root')))")
    assert result.passed
    hidden = set(os.listdir("/root")) - {".pyenv", ".cargo", ".rustup"}
    assert not any(name in result.output for name in hidden if len(name) > 3)


@pytest.mark.skipif(not ROOT, reason="the uid-based fallback needs root")
def test_fallback_without_namespaces_or_cgroups_still_contains(monkeypatch):
    """Where namespaces/cgroups are missing the pool warns and falls back to rlimits, setsid
    and killing everything the sample uid owns; forced here with EVOLCODER_SANDBOX_DISABLE."""
    monkeypatch.setenv("EVOLCODER_SANDBOX_DISABLE", "namespaces,cgroups")
    with Sandbox(1, LIMITS) as weak:
        assert "pidns" not in weak.features and "chroot" not in weak.features
        assert any("namespaces" in w for w in weak.warnings) and any("cgroups" in w for w in weak.warnings)
        assert run(weak, "assert 2 + 2 == 4").passed
        assert not run(weak, "import os\nos._exit(0)").passed
        assert run(weak, "while True: pass", timeout=1.0).status == "timed out"
        assert "MemoryError" in run(weak, "x = bytearray(1 << 30)").reason
        daemon = run(weak, """
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    time.sleep(1000)
                os._exit(0)
            time.sleep(0.2)
        """)
        assert daemon.passed, daemon
        time.sleep(0.2)
        assert not sandbox_processes(weak)
