"""The worker process: sets up its jail once, then forks one contained child per job.

Imports nothing heavy so that forks are cheap; the preloaded modules start warm in every
sample.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict

from evolcoder.eval.sandbox import child
from evolcoder.eval.sandbox.jail import Jail
from evolcoder.eval.sandbox.model import Job, RunResult
from evolcoder.eval.sandbox.supervise import judge, supervise
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
    outcome = supervise(pid, r_res, r_out, start + timeout, jail.limits.output_bytes,
                        jail.pidns_fd >= 0, jail.uid)
    duration = time.monotonic() - start
    shutil.rmtree(work, ignore_errors=True)
    return judge(outcome, nonce, duration)


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
