"""The typed objects the sandbox is driven by: limits, jobs, raw outcomes and results."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from evolcoder.errors import EvolcoderError

KINDS = ("python", "io", "argv")


@dataclass(frozen=True)
class Limits:
    """Per-sample resource limits; memory and processes are enforced per worker cgroup too."""

    timeout_s: float = 10.0
    memory_mb: int = 2048
    disk_mb: int = 64
    nproc: int = 256
    nofile: int = 256
    output_bytes: int = 16384


@dataclass(frozen=True)
class Job:
    """One unit of untrusted work. Callers pass dicts (see `Sandbox`); the worker types them
    here so a misspelt key fails loudly instead of being ignored inside the jail."""

    kind: str
    code: str = ""
    entry_point: str = ""
    inputs: Any = None  # encode(list of argument lists), for `io`
    skip: tuple[int, ...] = ()
    not_none: bool = False
    stop_on_error: bool = False
    expected: Any = None  # canonical outputs (transport form): judge `io` outputs as they stream
    oracle: dict[str, Any] = field(default_factory=dict)  # rule, atol (and task_id, for messages)
    input_limits: Any = None  # `io`: seconds each input may take once outputs have started
    files: dict[str, str] = field(default_factory=dict)
    steps: tuple[tuple[str, ...], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> "Job":
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown job keys: {', '.join(sorted(unknown))}")
        if raw.get("kind") not in KINDS:
            raise ValueError(f"job kind must be one of {KINDS}, got {raw.get('kind')!r}")
        values = dict(raw)
        values["skip"] = tuple(values.get("skip") or ())
        values["steps"] = tuple(tuple(step) for step in values.get("steps") or ())
        return cls(**values)


@dataclass(frozen=True)
class Outcome:
    """What supervision saw of one sample: the verdict pipe, captured output, how it ended."""

    verdict: bytes
    output: bytes
    timed_out: bool
    status: int


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


class SandboxUnavailable(EvolcoderError, RuntimeError):
    """No mechanism that contains model code is available, and running anyway was not asked for."""

    exit_code = 2
