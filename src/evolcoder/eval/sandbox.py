"""The one place where model-written code runs.

Why this shape: evaluation executes untrusted code thousands of times, so it has to be
both contained and cheap. A small pool of long-lived *worker* processes is started once;
each worker sets up, one time, a private mount namespace with a read-only view of the
machine (chroot), an empty network namespace and no environment. For every sample the
worker forks a child that becomes PID 1 of a fresh PID namespace, gets a fresh
size-limited tmpfs as its only writable directory, joins per-worker memory/pids cgroups,
drops to a per-worker unprivileged uid with no capabilities and `no_new_privs`, and only
then runs the code. When that child exits or is SIGKILLed at its deadline the kernel kills
everything left in its PID namespace, so daemons and grandchildren cannot survive.

A pass is never read from an exit code or from printed text: the harness writes a random
per-sample token to a private pipe only after the tests returned normally. (Code that runs
in the same interpreter as the tests could in principle dig that token out of the harness'
memory; no in-process harness can rule that out, which is why outputs of the `io` jobs are
sent back as plain data and compared outside the sandbox.)

Where a mechanism is missing (not root, no namespaces, no cgroups) the pool still runs,
with resource limits and process-group kills, and says so in `Sandbox.warnings`.
"""

from __future__ import annotations

import ctypes
import json
from hashlib import sha256 as _sha256
import math
import os
from pathlib import Path
import resource
import select
import shutil
import signal
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 4, 38, 36

_VERDICT_LIMIT = 256 << 20
_BIG_OUTPUT = 1 << 20  # outputs larger than this (as JSON) travel as a digest


@dataclass(frozen=True)
class Limits:
    """Per-sample resource limits; memory and processes are enforced per worker cgroup too."""

    timeout_s: float = 10.0
    memory_mb: int = 2048
    disk_mb: int = 64
    nproc: int = 256
    nofile: int = 256
    output_bytes: int = 16384


@dataclass
class RunResult:
    """What one job produced. `status` is `passed`, `failed`, `timed out` or `error`."""

    status: str
    reason: str = ""
    duration_s: float = 0.0
    output: str = ""
    data: Any = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        """Short human-readable verdict, e.g. `failed: AssertionError`."""
        return self.status if not self.reason else f"{self.status}: {self.reason}"


# ---------------------------------------------------------------------------------------
# Tagged JSON: plain data in and out of the sandbox, never pickle (unpickling runs code).
# Only exact builtin types are accepted, so a returned object cannot lie about equality.

def encode(value: Any, _depth: int = 0) -> Any:
    """Turn builtin data (incl. tuple/set/dict/complex/nan) into JSON-safe tagged form.

    Subclasses of builtins (Counter, OrderedDict, namedtuple, ...) are reduced to their
    base type through the base type's own methods, so an overridden `__eq__`, `__iter__`
    or `__repr__` cannot change what is reported; any other type is refused.
    """
    if _depth > 200:
        raise TypeError("value nested too deeply")
    d = _depth + 1
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        value = int.__int__(value)
        return value if value.bit_length() < 12000 else {"$i": format(value, "x")}
    if isinstance(value, float):
        value = float.__float__(value)
        return value if math.isfinite(value) else {"$f": repr(value)}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [encode(v, d) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"$t": [encode(v, d) for v in tuple.__iter__(value)]}
    if isinstance(value, (set, frozenset)):
        items = set.__iter__(value) if isinstance(value, set) else frozenset.__iter__(value)
        return {"$s" if isinstance(value, set) else "$fs": [encode(v, d) for v in items]}
    if isinstance(value, dict):
        return {"$d": [[encode(k, d), encode(v, d)] for k, v in dict.items(value)]}
    if isinstance(value, complex):
        return {"$c": [encode(complex.real.__get__(value), d), encode(complex.imag.__get__(value), d)]}
    if isinstance(value, bytes):
        return {"$b": bytes.hex(value)}
    raise TypeError(f"unsupported result type {type(value).__name__}")


def decode(value: Any) -> Any:
    """Inverse of `encode`; builds only builtin objects."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag == "$f":
        return float(inner)
    if tag == "$i":
        return int(inner, 16)
    if tag == "$t":
        return tuple(decode(v) for v in inner)
    if tag == "$s":
        return {decode(v) for v in inner}
    if tag == "$fs":
        return frozenset(decode(v) for v in inner)
    if tag == "$d":
        return {decode(k): decode(v) for k, v in inner}
    if tag == "$c":
        return complex(decode(inner[0]), decode(inner[1]))
    if tag == "$b":
        return bytes.fromhex(inner)
    raise ValueError(f"unknown tag {tag!r}")


def _canonical(value: Any) -> Any:
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag in ("$s", "$fs", "$d"):
        items = [_canonical(v) for v in inner]
        return {tag: sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    return {tag: _canonical(inner)}


def digest(encoded: Any) -> str:
    """Order-independent hash of an encoded value (sets and dicts sorted), for big outputs."""
    return _sha256(json.dumps(_canonical(encoded), sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Framing between the pool and its workers: 4-byte length + JSON.

def _send(fd: int, obj: Any) -> None:
    data = json.dumps(obj).encode()
    buf = struct.pack(">I", len(data)) + data
    while buf:
        buf = buf[os.write(fd, buf):]


def _recv_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("sandbox worker closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd: int) -> Any:
    (n,) = struct.unpack(">I", _recv_exact(fd, 4))
    return json.loads(_recv_exact(fd, n))


# ---------------------------------------------------------------------------------------
# Worker side (runs in the worker process; imports nothing heavy so forks are cheap).

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


class _Worker:
    """One sandbox worker: isolates itself once, then forks a jailed child per job."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.limits = Limits(**cfg["limits"])
        self.uid = cfg["uid"]
        self.features: list[str] = []
        self.warnings: list[str] = []
        self.pidns_fd = -1
        self.cgroup_fds: list[int] = []
        self.jailed = False

    def setup(self) -> None:
        if os.geteuid() != 0:
            self.warnings.append("not running as root: no namespaces, chroot, cgroups or uid drop; "
                                 "only rlimits and process-group kills contain samples")
            return
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of samples come back to be reaped
        disabled = set(self.cfg.get("disable", ()))
        if disabled:
            self.warnings.append(f"disabled by EVOLCODER_SANDBOX_DISABLE: {', '.join(sorted(disabled))}")
        for path in self.cfg.get("cgroup_procs", []):
            try:
                self.cgroup_fds.append(os.open(path, os.O_WRONLY))
            except OSError as exc:
                self.warnings.append(f"cgroup {path} unusable ({exc.strerror})")
        if self.cgroup_fds:
            self.features.append("cgroups")
        if "namespaces" in disabled:
            self.warnings.append("no namespaces: samples can reach the network and see the filesystem "
                                 "(writes limited by uid); leftovers are killed by uid")
            self.features.append("uid-drop")
            return
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
            self.features += ["netns", "ipcns"]
            self._build_root(self.cfg["staging"])
            self.jailed = True
            self.features += ["readonly-root", "chroot"]
        except OSError as exc:
            self.warnings.append(f"filesystem/network isolation unavailable ({exc}); samples can see the "
                                 "network and write where their uid may")
        try:
            self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
            self._new_pidns()
            self.features.append("pidns")
        except OSError as exc:
            self.pidns_fd = -1
            self.warnings.append(f"PID namespaces unavailable ({exc}); leftover processes are killed by uid")
        self.features.append("uid-drop")

    def _build_root(self, root: str) -> None:
        """Bind the whole tree read-only under `root`, add fresh /dev, /tmp, /run, then chroot."""
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("/", root, None, MS_BIND | MS_REC)
        self._expose(root, self.cfg.get("expose", []))
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4] for line in handle]
        for point in points:
            if point == root or point.startswith(root + "/"):
                try:
                    _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
                except OSError:
                    _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        for sub in ("run", "var/tmp"):
            target = os.path.join(root, sub)
            if os.path.isdir(target) and not os.path.islink(target):
                _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                       "size=4k,mode=755")
        # The only writable place: one sample at a time gets a fresh 0700 directory in it.
        _mount("tmpfs", os.path.join(root, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={self.limits.disk_mb}m,nr_inodes=8192,mode=711")
        # A private /proc instance that lists only the caller's own uid's processes.
        _mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        dev = os.path.join(root, "dev")
        _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
        for name in ("null", "zero", "random", "urandom"):
            target = os.path.join(dev, name)
            open(target, "w").close()
            _mount(f"/dev/{name}", target, None, MS_BIND)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                           ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(link, os.path.join(dev, name))
        _mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
        os.chroot(root)
        os.chdir("/")

    @staticmethod
    def _expose(root: str, paths: list[str]) -> None:
        """Make `paths` (the interpreter, toolchains) reachable for the sandbox uid.

        A private parent such as /root (mode 700) is replaced in the jail by an empty tmpfs
        into which only the needed subtrees are bound back, which also hides the rest of it.
        """
        masked: set[str] = set()
        for path in sorted(set(map(os.path.realpath, paths))):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                ancestor = "/" + "/".join(parts[:i])
                if os.stat(ancestor).st_mode & 0o001:
                    continue
                if ancestor not in masked:
                    _mount("tmpfs", root + ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
                    masked.add(ancestor)
                target = root + path
                os.makedirs(target, mode=0o755, exist_ok=True)
                _mount(path, target, None, MS_BIND | MS_REC)
                break

    def _new_pidns(self) -> None:
        _check(_libc.setns(self.pidns_fd, CLONE_NEWPID), "setns")
        _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")

    # -- one job ------------------------------------------------------------------------

    def run(self, job: dict) -> dict:
        timeout = float(job.get("timeout") or self.limits.timeout_s)
        nonce = os.urandom(16).hex()
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        r_go, w_go = os.pipe()
        if self.pidns_fd >= 0:
            self._new_pidns()
        work = self._workdir()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r_res), os.close(r_out), os.close(w_go)
                self._child(job, nonce, w_res, w_out, r_go, timeout, work)
            except BaseException:
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(70)
        os.close(w_res), os.close(w_out), os.close(r_go)
        for fd in self.cgroup_fds:
            try:
                os.write(fd, str(pid).encode())
            except OSError:
                pass
        os.write(w_go, b"g")
        os.close(w_go)
        verdict, output, timed_out, status = self._supervise(pid, r_res, r_out, start + timeout)
        duration = time.monotonic() - start
        shutil.rmtree(work, ignore_errors=True)
        return self._judge(verdict, output, timed_out, status, nonce, duration)

    def _workdir(self) -> str:
        """A fresh directory owned by the sample uid: in the jail's tmpfs, else a host temp dir."""
        if self.jailed:
            work = "/tmp/w"
            shutil.rmtree(work, ignore_errors=True)
            os.mkdir(work, 0o700)
        else:
            import tempfile

            work = tempfile.mkdtemp(prefix="evolcoder-sample-")
        if os.geteuid() == 0:
            os.chown(work, self.uid, self.uid)
        return work

    def _supervise(self, pid: int, r_res: int, r_out: int, deadline: float):
        cap = self.limits.output_bytes
        out, res = bytearray(), bytearray()
        open_fds = {r_res, r_out}
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        poller = select.poll()
        for fd in (r_res, r_out):
            poller.register(fd, select.POLLIN)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        timed_out, status = False, None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                self._kill(pid)
                break
            for fd, _ in poller.poll(max(1, min(int(left * 1000) + 1, 50 if pidfd < 0 else 10**9))):
                if fd == pidfd:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                elif fd == r_out:
                    if len(out) < cap:
                        out += chunk[: cap - len(out)]
                elif len(res) < _VERDICT_LIMIT:
                    res += chunk
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
        if status is None:
            status = os.waitpid(pid, 0)[1]
        if self.pidns_fd < 0:
            self._kill(pid)
            self._reap_uid()
        for fd in list(open_fds):
            os.set_blocking(fd, False)
            try:
                while True:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    if fd == r_res and len(res) < _VERDICT_LIMIT:
                        res += chunk
                    elif fd == r_out and len(out) < cap:
                        out += chunk[: cap - len(out)]
            except BlockingIOError:
                pass
        for fd in (r_res, r_out) + ((pidfd,) if pidfd >= 0 else ()):
            os.close(fd)
        return bytes(res), bytes(out), timed_out, status

    def _reap_uid(self) -> None:
        """Without a PID namespace: SIGKILL everything the sample uid owns (kill -1 as that uid)."""
        if os.geteuid() != 0:
            return
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                try:
                    os.setresgid(self.uid, self.uid, self.uid)
                    os.setresuid(self.uid, self.uid, self.uid)
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

    def _kill(self, pid: int) -> None:
        for target in (pid, -pid):
            try:
                os.kill(target, signal.SIGKILL) if target > 0 else os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def _judge(self, verdict: bytes, output: bytes, timed_out: bool, status: int, nonce: str,
               duration: float) -> dict:
        text = output.decode("utf-8", "replace")
        base = {"duration_s": round(duration, 6), "output": text}
        if timed_out:
            return {**base, "status": "timed out", "reason": ""}
        head, _, rest = verdict.partition(b"\n")
        if head == f"PASS {nonce}".encode():
            data = json.loads(rest) if rest else None
            return {**base, "status": "passed", "reason": "", "data": data}
        if head.startswith(f"FAIL {nonce} ".encode()):
            return {**base, "status": "failed", "reason": head[len(nonce) + 6:].decode("utf-8", "replace")}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            why = {signal.SIGKILL: "killed (SIGKILL; memory limit?)", signal.SIGXCPU: "CPU time limit",
                   signal.SIGXFSZ: "file size limit", signal.SIGSEGV: "segmentation fault"}.get(
                sig, f"killed by signal {signal.Signals(sig).name}")
            return {**base, "status": "failed", "reason": why}
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return {**base, "status": "failed", "reason": f"exited (code {code}) without a verdict"}

    # -- inside the jailed child (never returns) ------------------------------------------

    def _child(self, job: dict, nonce: str, w_res: int, w_out: int, r_go: int, timeout: float,
               work: str) -> None:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(w_out, 1)
        os.dup2(w_out, 2)
        low = 3
        for fd in sorted({w_res, w_out, r_go}):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        os.read(r_go, 1)
        os.close(r_go)
        lim = self.limits
        root = os.geteuid() == 0
        os.chdir(work)
        if self.pidns_fd < 0:
            os.setsid()
        cpu = int(math.ceil(timeout)) + 1
        mem = lim.memory_mb << 20
        for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, lim.disk_mb << 20),
                           (resource.RLIMIT_NOFILE, lim.nofile), (resource.RLIMIT_CORE, 0),
                           (resource.RLIMIT_NPROC, lim.nproc),
                           (resource.RLIMIT_AS if job["kind"] != "argv" else resource.RLIMIT_DATA, mem)):
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass
        if root:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work,
                           "LANG": "C.UTF-8"})
        os.environ.update({k: v.replace("$HOME", work) for k, v in job.get("env", {}).items()})
        _Worker._harness_pid = os.getpid()
        kind = job["kind"]
        if kind == "argv":
            self._run_argv(job, nonce, w_res)
        else:
            self._run_python(job, nonce, w_res)

    _harness_pid = -1

    @classmethod
    def _report(cls, w_res: int, line: str, data: Any = None) -> None:
        if os.getpid() != cls._harness_pid:
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

    def _run_python(self, job: dict, nonce: str, w_res: int) -> None:
        import builtins
        import copy

        fail = f"FAIL {nonce} "
        scope: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        sys.argv = ["solution.py"]
        try:
            exec(compile(job["code"], "solution.py", "exec"), scope)  # noqa: S102 - the sandbox
        except BaseException as exc:  # SystemExit included: exiting early is not passing
            self._report(w_res, fail + _describe(exc))
        if job["kind"] == "python":
            self._report(w_res, f"PASS {nonce}")
        fn = scope.get(job["entry_point"])
        if not callable(fn):
            self._report(w_res, fail + f"no function named {job['entry_point']!r}")
        outputs: list[dict] = []
        skip, not_none = set(job.get("skip", ())), job.get("not_none", False)
        for i, args in enumerate(decode(job["inputs"])):
            if i in skip:
                outputs.append({"skipped": True})
                continue
            try:
                out = fn(*copy.deepcopy(args))
                if not_none and type(out) is not bool:
                    out = out is not None
                enc = encode(out)
                if len(json.dumps(enc)) > _BIG_OUTPUT:
                    outputs.append({"digest": digest(enc)})
                else:
                    outputs.append({"ok": enc})
            except BaseException as exc:
                outputs.append({"error": _describe(exc)})
                if job.get("stop_on_error"):
                    break
        self._report(w_res, f"PASS {nonce}", outputs)

    def _run_argv(self, job: dict, nonce: str, w_res: int) -> None:
        fail = f"FAIL {nonce} "
        os.mkdir("src")  # some toolchains (go) refuse to treat the temp root itself as a project
        os.chdir("src")
        for name, text in job.get("files", {}).items():
            with open(name, "w", encoding="utf-8") as handle:
                handle.write(text)
        for i, argv in enumerate(job["steps"]):
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(w_res)
                    os.execvpe(argv[0], argv, os.environ)
                finally:
                    os._exit(127)
            status = os.waitpid(pid, 0)[1]
            if status != 0:
                step = "compile" if i < len(job["steps"]) - 1 else "run"
                if os.WIFSIGNALED(status):
                    why = f"{step} killed by {signal.Signals(os.WTERMSIG(status)).name}"
                else:
                    why = f"{step} exited with code {os.WEXITSTATUS(status)}"
                self._report(w_res, fail + why)
        self._report(w_res, f"PASS {nonce}")


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# Imported once per worker so that each forked sample starts with them warm.
_PRELOAD = ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string",
            "random", "operator", "copy", "hashlib", "fractions", "decimal", "statistics", "datetime",
            "dataclasses", "traceback")


def _worker_main() -> None:
    """Entry point of a worker process: fd 0 receives jobs, fd 1 returns results."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    worker = _Worker(_recv(rfd))
    try:
        worker.setup()
    except Exception as exc:  # report instead of dying silently
        worker.warnings.append(f"sandbox setup failed: {exc}")
    _send(wfd, {"features": worker.features, "warnings": worker.warnings})
    while True:
        try:
            job = _recv(rfd)
        except EOFError:
            return
        try:
            result = worker.run(job)
        except Exception as exc:
            result = {"status": "error", "reason": f"sandbox error: {exc}", "duration_s": 0.0, "output": ""}
        _send(wfd, result)


# ---------------------------------------------------------------------------------------
# Pool side (runs in the evaluating process).

class _Cgroups:
    """Per-worker memory and pids cgroups (v1 or v2); absent ones are reported, not fatal."""

    def __init__(self, name: str, limits: Limits, enabled: bool = True) -> None:
        self.dirs: list[str] = []
        self.procs: list[str] = []
        self.warnings: list[str] = []
        mem = str(limits.memory_mb << 20)
        if os.geteuid() != 0:
            return
        if not enabled:
            self.warnings.append("cgroups disabled: memory is bounded per process by RLIMIT_AS/RLIMIT_DATA "
                                 "and processes by RLIMIT_NPROC only")
            return
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self._make("/sys/fs/cgroup", name, {"memory.max": mem, "memory.swap.max": "0",
                                                 "pids.max": str(limits.nproc)})
        else:
            self._make("/sys/fs/cgroup/memory", name, {"memory.limit_in_bytes": mem})
            self._make("/sys/fs/cgroup/pids", name, {"pids.max": str(limits.nproc)})
        if not self.procs:
            self.warnings.append("no memory/pids cgroup available: memory is bounded per process by "
                                 "RLIMIT_AS/RLIMIT_DATA and processes by RLIMIT_NPROC only")

    def _make(self, root: str, name: str, settings: dict[str, str]) -> None:
        path = os.path.join(root, "evolcoder", name)
        try:
            os.makedirs(path, exist_ok=True)
            control = os.path.join(root, "evolcoder", "cgroup.subtree_control")
            if os.path.exists(control):  # cgroup v2: let the leaves use memory and pids limits
                with open(control, "w") as handle:
                    handle.write("+memory +pids")
            for key, value in settings.items():
                try:
                    with open(os.path.join(path, key), "w") as handle:
                        handle.write(value)
                except FileNotFoundError:
                    if key != "memory.swap.max":
                        raise
            self.dirs.append(path)
            self.procs.append(os.path.join(path, "cgroup.procs"))
        except OSError as exc:
            self.warnings.append(f"cgroup {path}: {exc.strerror or exc}")

    def remove(self) -> None:
        for path in self.dirs:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class _Handle:
    def __init__(self, index: int, limits: Limits, staging: str) -> None:
        import subprocess

        self.index = index
        self.uid = 1_000_000 + (os.getpid() % 100_000) * 64 + index
        disable = [d for d in os.environ.get("EVOLCODER_SANDBOX_DISABLE", "").split(",") if d]
        self.cgroups = _Cgroups(f"{os.getpid()}-{index}", limits, enabled="cgroups" not in disable)
        src = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {src!r}); from evolcoder.eval.sandbox import _worker_main; _worker_main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        expose = [sys.prefix, sys.base_prefix, src, *os.environ.get("EVOLCODER_SANDBOX_EXPOSE", "").split(os.pathsep)]
        _send(self.wfd, {"limits": asdict(limits), "uid": self.uid, "staging": staging,
                         "expose": [p for p in expose if p and os.path.exists(p)],
                         "cgroup_procs": self.cgroups.procs, "disable": disable})
        hello = _recv(self.rfd)
        self.features: list[str] = hello["features"]
        self.warnings: list[str] = self.cgroups.warnings + hello["warnings"]

    def call(self, job: dict) -> dict:
        _send(self.wfd, job)
        return _recv(self.rfd)

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.cgroups.remove()


class Sandbox:
    """A pool of jailed workers. Thread-safe: `run` may be called from many threads.

    Jobs are dicts:
      {"kind": "python", "code": str}                      pass = code ran to the end
      {"kind": "io", "code": str, "entry_point": str, "inputs": encode(list of arg lists)}
                                                           result.data = per-input outputs
      {"kind": "argv", "files": {name: text}, "steps": [[argv...], ...]}
                                                           pass = every step exits 0
    plus optional "timeout" (seconds, default `limits.timeout_s`).
    """

    def __init__(self, workers: int | None = None, limits: Limits = Limits()) -> None:
        import queue
        import tempfile

        self.limits = limits
        self.size = max(1, workers or os.cpu_count() or 1)
        self._staging = tempfile.mkdtemp(prefix="evolcoder-jail-")
        self._free: queue.Queue[_Handle] = queue.Queue()
        self._all: list[_Handle] = []
        self._lock = threading.Lock()
        try:
            for i in range(self.size):
                handle = _Handle(i, limits, self._staging)
                self._all.append(handle)
                self._free.put(handle)
        except BaseException:
            self.close()
            raise
        first = self._all[0]
        self.features: tuple[str, ...] = tuple(first.features)
        self.warnings: tuple[str, ...] = tuple(dict.fromkeys(first.warnings))

    def run(self, job: dict) -> RunResult:
        handle = self._free.get()
        try:
            raw = handle.call(job)
        except (EOFError, OSError, BrokenPipeError) as exc:
            raw = {"status": "error", "reason": f"sandbox worker died ({exc})", "duration_s": 0.0, "output": ""}
            handle = self._replace(handle)
        finally:
            self._free.put(handle)
        return RunResult(raw["status"], raw.get("reason", ""), raw.get("duration_s", 0.0),
                         raw.get("output", ""), raw.get("data"))

    def _replace(self, dead: _Handle) -> _Handle:
        with self._lock:
            dead.close()
            fresh = _Handle(dead.index, self.limits, self._staging)
            self._all[self._all.index(dead)] = fresh
            return fresh

    def map(self, jobs: list[dict], on_result=None) -> list[RunResult]:
        """Run jobs on all workers; results come back in input order."""
        from concurrent.futures import ThreadPoolExecutor

        results: list[RunResult | None] = [None] * len(jobs)

        def one(i: int) -> None:
            results[i] = self.run(jobs[i])
            if on_result is not None:
                on_result(i, results[i])

        with ThreadPoolExecutor(self.size) as pool:
            for future in [pool.submit(one, i) for i in range(len(jobs))]:
                future.result()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for handle in self._all:
            handle.close()
        self._all.clear()
        try:
            os.rmdir(self._staging)
        except OSError:
            pass

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
