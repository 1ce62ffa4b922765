"""Pool side, in the evaluating process: per-worker cgroups, worker handles, `Sandbox`."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from evolcoder.eval.sandbox.jail import RLIMITS_ONLY
from evolcoder.eval.sandbox.model import Limits, RunResult, SandboxUnavailable
from evolcoder.eval.sandbox.wire import recv, send


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


def _homes() -> list[str]:
    """The user's home directories: hidden from samples that run with the user's uid."""
    import pwd

    homes = {os.environ.get("HOME", "")}
    try:
        homes.add(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        pass
    return sorted(h for h in homes if h and h != "/" and os.path.isdir(h))


class _Handle:
    def __init__(self, index: int, limits: Limits, staging: str) -> None:
        import subprocess

        self.index = index
        self.uid = 1_000_000 + (os.getpid() % 100_000) * 64 + index
        disable = [d for d in os.environ.get("EVOLCODER_SANDBOX_DISABLE", "").split(",") if d]
        self.cgroups = _Cgroups(f"{os.getpid()}-{index}", limits, enabled="cgroups" not in disable)
        src = str(Path(__file__).resolve().parents[3])
        code = f"import sys; sys.path.insert(0, {src!r}); from evolcoder.eval.sandbox.worker import _worker_main; _worker_main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        expose = [sys.prefix, sys.base_prefix, src, *os.environ.get("EVOLCODER_SANDBOX_EXPOSE", "").split(os.pathsep)]
        send(self.wfd, {"limits": asdict(limits), "uid": self.uid, "staging": staging,
                         "expose": [p for p in expose if p and os.path.exists(p)],
                         "private": _homes(), "cgroup_procs": self.cgroups.procs, "disable": disable})
        hello = recv(self.rfd)
        self.containment: str = hello["containment"]
        self.features: list[str] = hello["features"]
        self.warnings: list[str] = self.cgroups.warnings + hello["warnings"]

    def call(self, job: dict) -> dict:
        send(self.wfd, job)
        return recv(self.rfd)

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

    `containment` names what protects the run (root jail, user-namespace jail, root
    uid-drop, rlimits only). With rlimits only, model code could delete the user's files,
    reach the network and leave processes, so the pool refuses to start unless
    `unsafe_rlimits_only` is set.
    """

    def __init__(self, workers: int | None = None, limits: Limits = Limits(), *,
                 unsafe_rlimits_only: bool = False) -> None:
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
        self.containment: str = first.containment
        self.features: tuple[str, ...] = tuple(first.features)
        self.warnings: tuple[str, ...] = tuple(dict.fromkeys(first.warnings))
        if self.containment == RLIMITS_ONLY and not unsafe_rlimits_only:
            self.close()
            raise SandboxUnavailable(
                "refusing to run model code with rlimits only (" + "; ".join(self.warnings) + "). "
                "Pass --unsafe-rlimits-only (or set sandbox.unsafe_rlimits_only in "
                "params.yaml) to run it anyway.")

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


def require_containment(unsafe_rlimits_only: bool = False) -> str:
    """Start one worker to learn what would contain model code, and refuse (SandboxUnavailable)
    as `Sandbox` would; lets a stage fail before it spends hours generating samples."""
    with Sandbox(1, unsafe_rlimits_only=unsafe_rlimits_only) as box:
        return box.containment
