"""Run a command as an ordinary user (nobody, 65534) from a root test process.

CI runs as root, yet the sandbox must hold for users without root. The command runs in a
private mount namespace of its own in which the interpreter, the virtualenv and this
checkout are reachable for nobody even when they live under a private directory such as
/root (as they do on the CI machine); nothing else changes, and the machine's mounts are
untouched. Then it drops to nobody for good (setgroups/setresgid/setresuid) and execs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NOBODY = 65534
REPO = Path(__file__).resolve().parents[1]

_PREAMBLE = r"""
import os, subprocess, sys, tempfile
uid, argv, env, needed = int(sys.argv[1]), sys.argv[3:], eval(sys.argv[2]), eval(os.environ.pop("_NEEDED"))
plan = {}
for path in needed:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            plan.setdefault(ancestor, []).append(path)
            break
hold = tempfile.mkdtemp(prefix="evolcoder-hold-")
held = []
for ancestor, paths in plan.items():
    for path in paths:
        spot = os.path.join(hold, str(len(held)))
        os.mkdir(spot)
        subprocess.run(["mount", "--rbind", path, spot], check=True)
        held.append((spot, path))
for ancestor in plan:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", ancestor], check=True)
for spot, path in held:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "--move", spot, path], check=True)
    os.rmdir(spot)
os.rmdir(hold)
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
os.execvpe(argv[0], argv, env)
"""


def run_as_nobody(argv: list[str], env: dict[str, str], timeout: float,
                  cwd: str | None = None) -> subprocess.CompletedProcess:
    """`argv` as uid/gid 65534 with exactly `env` (plus PATH); output captured as text."""
    needed = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, REPO, *sys.path)
                     if p and os.path.exists(p)})
    needed = [p for p in needed if not any(p.startswith(q + "/") for q in needed)]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-c", _PREAMBLE,
         str(NOBODY), repr(full_env), *argv],
        env={"PATH": full_env["PATH"], "_NEEDED": repr(needed)}, capture_output=True, text=True,
        timeout=timeout, cwd=cwd or "/")
