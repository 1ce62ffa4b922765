"""Hardening inside the forked sample, before any model code: descriptors, rlimits, uid,
no_new_privs, a clean environment. Never returns."""

from __future__ import annotations

import math
import os
import resource

from evolcoder.eval.sandbox import jobs
from evolcoder.eval.sandbox.jail import PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, Jail, libc
from evolcoder.eval.sandbox.model import Job


def _keep_only(fds: set[int]) -> None:
    low = 3
    for fd in sorted(fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _set_rlimits(jail: Jail, job: Job, timeout: float) -> None:
    lim = jail.limits
    cpu = int(math.ceil(timeout)) + 1
    mem = lim.memory_mb << 20
    for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, lim.disk_mb << 20),
                       (resource.RLIMIT_NOFILE, lim.nofile), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NPROC, lim.nproc),
                       (resource.RLIMIT_AS if job.kind != "argv" else resource.RLIMIT_DATA, mem)):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass


def enter(jail: Jail, job: Job, nonce: str, w_res: int, w_out: int, r_go: int, timeout: float,
          work: str) -> None:
    """Become the contained sample and run the job; waits on `r_go` until the worker has
    put this process into its cgroups."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(w_out, 1)
    os.dup2(w_out, 2)
    _keep_only({w_res, w_out, r_go})
    os.read(r_go, 1)
    os.close(r_go)
    jail.isolate_sample(work)
    os.chdir(work)
    if jail.pidns_fd < 0 or jail.userns:  # same uid as the worker: leave its process group
        os.setsid()
    _set_rlimits(jail, job, timeout)
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(jail.uid, jail.uid, jail.uid)
        os.setresuid(jail.uid, jail.uid, jail.uid)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work,
                       "LANG": "C.UTF-8"})
    os.environ.update({k: v.replace("$HOME", work) for k, v in job.env.items()})
    jobs.run(job, nonce, w_res)
