"""Job runners, inside the hardened sample: run the code, report through the token pipe.

Code that runs in the same interpreter as the tests could in principle dig the token out
of the harness' memory; no in-process harness can rule that out, which is why outputs of
the `io` jobs are sent back as plain data and compared outside the sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from evolcoder.eval.sandbox.model import Job
from evolcoder.eval.sandbox.wire import BIG_OUTPUT, decode, digest, encode

_harness_pid = -1


def run(job: Job, nonce: str, w_res: int) -> None:
    """Dispatch on the job kind; never returns."""
    global _harness_pid
    _harness_pid = os.getpid()
    if job.kind == "argv":
        run_argv(job, nonce, w_res)
    else:
        run_python(job, nonce, w_res)


def report(w_res: int, line: str, data: Any = None) -> None:
    """Send the verdict line (and data) and exit; only the harness process may do this."""
    if os.getpid() != _harness_pid:
        # a copy forked by the sample must not speak for the harness; it exits the way
        # a plain Python process would (1 after an uncaught exception)
        os._exit(0 if line.startswith("PASS") else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    payload = line.encode() + b"\n" + (json.dumps(data).encode() if data is not None else b"")
    while payload:
        payload = payload[os.write(w_res, payload):]
    os.close(w_res)
    os._exit(0)


def run_python(job: Job, nonce: str, w_res: int) -> None:
    """`python`: pass = the code ran to the end. `io`: call `entry_point` on each input and
    return the encoded outputs for judging outside."""
    import builtins

    fail = f"FAIL {nonce} "
    scope: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    sys.argv = ["solution.py"]
    try:
        exec(compile(job.code, "solution.py", "exec"), scope)  # noqa: S102 - the sandbox
    except BaseException as exc:  # SystemExit included: exiting early is not passing
        report(w_res, fail + describe(exc))
    if job.kind == "python":
        report(w_res, f"PASS {nonce}")
    fn = scope.get(job.entry_point)
    if not callable(fn):
        report(w_res, fail + f"no function named {job.entry_point!r}")
    inputs = decode(job.inputs)  # before the header: the per-input clock starts at the header
    stream(w_res, f"STREAM {nonce}\n".encode())
    skip = set(job.skip)
    for i, args in enumerate(inputs):
        line = b'{"skipped": true}\n' if i in skip else call(fn, args, job.not_none)
        stream(w_res, line)
        if job.stop_on_error and line.startswith(b'{"error"'):
            break
    report(w_res, f"END {nonce}")


def call(fn: Any, args: list, not_none: bool) -> bytes:
    """One input's output line in transport form (a digest when it is over 1 MiB as JSON),
    with the seconds the whole step took (`t`: copy, call, encoding), from which canonical
    runs set each input's time limit."""
    import copy
    import time

    start = time.perf_counter()
    try:
        out = fn(*copy.deepcopy(args))
        if not_none and type(out) is not bool:
            out = out is not None
        enc = encode(out)
        text = json.dumps(enc)
        head = '{"digest": ' + json.dumps(digest(enc)) if len(text) > BIG_OUTPUT else '{"ok": ' + text
        return (head + f', "t": {time.perf_counter() - start:.6f}}}\n').encode()
    except BaseException as exc:
        return (json.dumps({"error": describe(exc)}) + "\n").encode()


def stream(w_res: int, payload: bytes) -> None:
    """Send bytes on the result pipe now, so the worker can judge this output while the next runs."""
    if os.getpid() != _harness_pid:
        os._exit(1)
    while payload:
        payload = payload[os.write(w_res, payload):]


def run_argv(job: Job, nonce: str, w_res: int) -> None:
    """`argv`: write the files, run each step; pass = every step exits 0."""
    fail = f"FAIL {nonce} "
    os.mkdir("src")  # some toolchains (go) refuse to treat the temp root itself as a project
    os.chdir("src")
    for name, text in job.files.items():
        with open(name, "w", encoding="utf-8") as handle:
            handle.write(text)
    for i, argv in enumerate(job.steps):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w_res)
                os.execvpe(argv[0], argv, os.environ)
            finally:
                os._exit(127)
        status = os.waitpid(pid, 0)[1]
        if status != 0:
            step = "compile" if i < len(job.steps) - 1 else "run"
            if os.WIFSIGNALED(status):
                why = f"{step} killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                why = f"{step} exited with code {os.WEXITSTATUS(status)}"
            report(w_res, fail + why)
    report(w_res, f"PASS {nonce}")


def describe(exc: BaseException) -> str:
    """`Type: message` on one line, at most 200 characters of message."""
    text = str(exc).replace("\n", " ")[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
