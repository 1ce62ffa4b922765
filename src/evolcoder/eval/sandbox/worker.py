"""The worker process: sets up its jail once, then forks one contained child per job.

Imports nothing heavy so that forks are cheap; the preloaded modules start warm in every
sample.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict

from evolcoder.eval.sandbox import child
from evolcoder.eval.sandbox.jail import Jail
from evolcoder.eval.sandbox.model import Job, RunResult
from evolcoder.eval.sandbox.oracle import StreamJudge
from evolcoder.eval.sandbox.supervise import VERDICT_LIMIT, judge, supervise
from evolcoder.eval.sandbox.wire import recv, send

_PRELOAD = ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string",
            "random", "operator", "copy", "hashlib", "fractions", "decimal", "statistics", "datetime",
            "dataclasses", "traceback")


def run_job(jail: Jail, job: Job) -> RunResult:
    """Fork the sample (in a fresh PID namespace where available), let it go once it is in
    the cgroups, supervise it and judge what came back."""
    timeout = float(job.timeout or jail.limits.timeout_s)
    nonce = os.urandom(16).hex()
    r_res, w_res = os.pipe()
    r_out, w_out = os.pipe()
    r_go, w_go = os.pipe()
    if jail.pidns_fd >= 0:
        jail.new_pidns()
    work = jail.workdir()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r_res), os.close(r_out), os.close(w_go)
            child.enter(jail, job, nonce, w_res, w_out, r_go, timeout, work)
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(70)
    os.close(w_res), os.close(w_out), os.close(r_go)
    for fd in jail.cgroup_fds:
        try:
            os.write(fd, str(pid).encode())
        except OSError:
            pass
    os.write(w_go, b"g")
    os.close(w_go)
    lines = OutputStream(job, nonce) if job.kind == "io" else None
    outcome = supervise(pid, r_res, r_out, start + timeout, jail.limits.output_bytes,
                        jail.pidns_fd >= 0, jail.uid, None if lines is None else lines.feed,
                        None if lines is None else lines.next_limit)
    duration = time.monotonic() - start
    shutil.rmtree(work, ignore_errors=True)
    result = judge(outcome, nonce, duration, lines.verdict if lines else None)
    return result if lines is None else lines.finish(result)


def _worker_main() -> None:
    """Entry point of a worker process: fd 0 receives jobs, fd 1 returns results."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    jail = Jail(recv(rfd))
    try:
        jail.setup()
    except Exception as exc:  # report instead of dying silently
        jail.warnings.append(f"sandbox setup failed: {exc}")
    send(wfd, {"containment": jail.containment, "features": jail.features, "warnings": jail.warnings})
    while True:
        try:
            raw = recv(rfd)
        except EOFError:
            return
        try:
            result = run_job(jail, Job.from_dict(raw))
        except Exception as exc:
            result = RunResult("error", f"sandbox error: {exc}")
        send(wfd, asdict(result))


class OutputStream:
    """The `io` result pipe, line by line: a header, one JSON line per input, an end line.

    With expected outputs in the job each output is judged as it arrives (`feed` returns True
    at the first wrong one, and the sample is killed); without them (canonical runs) the
    outputs are collected and returned as `data`.
    """

    def __init__(self, job: Job, nonce: str) -> None:
        self.nonce, self.buf, self.outputs = nonce, bytearray(), []
        self.header: bytes | None = None
        self.ended = False
        self.judge = None if job.expected is None else StreamJudge(job.oracle, job.expected, job.inputs)
        self.limits, self.count = job.input_limits, 0

    def next_limit(self) -> float | None:
        """Seconds the pending input may take (None: only the sample's deadline applies)."""
        if not self.limits or self.header is None:
            return None
        return self.limits[min(self.count, len(self.limits) - 1)]

    @property
    def verdict(self) -> bytes:
        """What `judge` reads: PASS once the stream ended properly, else the sample's own line."""
        if self.header == f"STREAM {self.nonce}".encode():
            return f"PASS {self.nonce}".encode() if self.ended else b""
        return self.header or b""

    def feed(self, chunk: bytes) -> bool:
        """Take result-pipe bytes; True means stop the sample (a wrong output, or a line
        longer than any output can be)."""
        scan = len(self.buf)  # the bytes before have no newline: search only the new ones
        self.buf += chunk
        while (cut := self.buf.find(b"\n", scan)) >= 0:
            line = bytes(self.buf[:cut])
            del self.buf[:cut + 1]
            scan = 0
            if self._line(line):
                return True
        if len(self.buf) > VERDICT_LIMIT:
            self.buf.clear()
            return self._line(b"") if self.judge is not None else True
        return False

    def _line(self, line: bytes) -> bool:
        if self.header is None:
            self.header = line
            return False
        if self.ended:
            return False
        if line == f"END {self.nonce}".encode():
            self.ended = True
            return False
        self.count += 1
        try:
            got = json.loads(line)
        except ValueError:
            got = {"error": "malformed output line"}
        if self.judge is None:
            self.outputs.append(got)
            return False
        return self.judge.feed(got) is not None

    def finish(self, result: RunResult) -> RunResult:
        """Turn the supervised run into the verdict; `data` carries what the caller needs."""
        if self.judge is None:
            result.data = self.outputs if result.passed else None
            return result
        result.data = {"ok_through": self.judge.ok_through}
        if self.judge.failure is not None:
            result.status, result.reason = "failed", self.judge.failure
        elif result.passed and self.judge.ok_through < len(self.judge.expected):
            result.status = "failed"
            result.reason = f"stopped after {self.judge.ok_through} of {len(self.judge.expected)} inputs"
        return result
