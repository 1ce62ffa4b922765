"""Supervision of one running sample from the worker: deadline, capped output, kills, verdict.

A pass is never read from an exit code or from printed text: only the line carrying the
per-sample token on the private result pipe counts.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import time
from typing import Callable

from evolcoder.eval.sandbox.model import Outcome, RunResult

VERDICT_LIMIT = 256 << 20


def supervise(pid: int, r_res: int, r_out: int, deadline: float, cap: int, in_pidns: bool,
              uid: int, on_result: Callable[[bytes], bool] | None = None,
              stall: Callable[[], float | None] | None = None) -> Outcome:
    """Collect the sample's pipes until it exits or its deadline passes; then make sure
    nothing it started survives (the PID namespace does that, else kill by group and uid).

    With `on_result`, result-pipe bytes go to it as they arrive instead of being kept; when
    it returns True (a wrong output) the sample is killed at once. `stall`: once results
    have started to arrive, says after each how long the next may take; a longer gap is a
    timeout too (a hang on one input), as EvalPlus's per-input time limit is."""
    got = _Collected(r_res, r_out, cap, on_result)
    open_fds = {r_res, r_out}
    poller, pidfd = _poller(pid, r_res, r_out)
    timed_out, status = False, None
    stall_at = math.inf
    while not got.stopped:
        left = min(deadline, stall_at) - time.monotonic()
        if left <= 0:
            timed_out = True
            kill(pid)
            break
        for fd, _ in poller.poll(max(1, min(int(left * 1000) + 1, 50 if pidfd < 0 else 10**9))):
            if fd == pidfd:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            got.take(fd, chunk)
            if fd == r_res and on_result is not None:
                wait = stall() if stall is not None else None
                stall_at = math.inf if wait is None else time.monotonic() + wait
        if got.stopped:
            kill(pid)
            break
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
    if status is None:
        status = os.waitpid(pid, 0)[1]
    if not in_pidns:
        kill(pid)
        reap_uid(uid)
    _drain(open_fds, got)
    for fd in (r_res, r_out) + ((pidfd,) if pidfd >= 0 else ()):
        os.close(fd)
    return Outcome(bytes(got.res), bytes(got.out), timed_out and not got.stopped, status)


class _Collected:
    """What the sample's pipes delivered: its output (capped at `cap`), and the verdict bytes
    (capped) or, with `on_result`, nothing kept: each result chunk goes to `on_result`, and
    `stopped` turns True at the first one it rejects."""

    def __init__(self, r_res: int, r_out: int, cap: int, on_result: Callable[[bytes], bool] | None) -> None:
        self.r_res, self.r_out, self.cap, self.on_result = r_res, r_out, cap, on_result
        self.out, self.res = bytearray(), bytearray()
        self.stopped = False

    def take(self, fd: int, chunk: bytes) -> None:
        if fd == self.r_out:
            if len(self.out) < self.cap:
                self.out += chunk[: self.cap - len(self.out)]
        elif self.on_result is not None:
            if not self.stopped:
                self.stopped = self.on_result(chunk)
        elif len(self.res) < VERDICT_LIMIT:
            self.res += chunk


def _poller(pid: int, r_res: int, r_out: int) -> tuple[select.poll, int]:
    """A poll set on both pipes and, where the kernel has pidfds, on the sample's exit (-1: none,
    then the loop wakes every 50 ms to look)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    poller = select.poll()
    for fd in (r_res, r_out):
        poller.register(fd, select.POLLIN)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    return poller, pidfd


def _drain(open_fds: set[int], got: _Collected) -> None:
    """What is still buffered in the pipes once the sample is gone (it may have written its
    verdict just before exiting)."""
    for fd in list(open_fds):
        os.set_blocking(fd, False)
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                got.take(fd, chunk)
        except BlockingIOError:
            pass


def reap_uid(uid: int) -> None:
    """Without a PID namespace: SIGKILL everything the sample uid owns (kill -1 as that uid)."""
    if os.geteuid() != 0:
        return
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # reap the (killed) orphans this subreaper inherited
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.002)
        except ChildProcessError:
            break


def kill(pid: int) -> None:
    """SIGKILL the sample and its process group (it may have left the group; then the pid)."""
    for target in (pid, -pid):
        try:
            os.kill(target, signal.SIGKILL) if target > 0 else os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def judge(outcome: Outcome, nonce: str, duration: float, verdict: bytes | None = None) -> RunResult:
    """The verdict: the token line decides; otherwise explain how the sample ended.

    `verdict` replaces the result pipe's bytes when the worker consumed them as a stream."""
    text = outcome.output.decode("utf-8", "replace")
    duration = round(duration, 6)
    if outcome.timed_out:
        return RunResult("timed out", "", duration, text)
    head, _, rest = (outcome.verdict if verdict is None else verdict).partition(b"\n")
    if head == f"PASS {nonce}".encode():
        return RunResult("passed", "", duration, text, json.loads(rest) if rest else None)
    if head.startswith(f"FAIL {nonce} ".encode()):
        return RunResult("failed", head[len(nonce) + 6:].decode("utf-8", "replace"), duration, text)
    status = outcome.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = {signal.SIGKILL: "killed (SIGKILL; memory limit?)", signal.SIGXCPU: "CPU time limit",
               signal.SIGXFSZ: "file size limit", signal.SIGSEGV: "segmentation fault"}.get(
            sig, f"killed by signal {signal.Signals(sig).name}")
        return RunResult("failed", why, duration, text)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return RunResult("failed", f"exited (code {code}) without a verdict", duration, text)
