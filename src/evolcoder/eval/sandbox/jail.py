"""Jail set-up, done once per worker: namespaces, a read-only root, cgroups, a PID namespace.

Runs in the worker process before any sample; a missing mechanism becomes a warning and
the pool still runs with what is left (see `Sandbox.warnings`).
"""

from __future__ import annotations

import ctypes
import os
import shutil

from evolcoder.eval.sandbox.model import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 4, 38, 36

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    """Turn a libc -1 into an OSError with errno text."""
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(),
                     ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


class Jail:
    """The worker's isolation state: what is in place, what is missing, and the handles
    (PID namespace, cgroup files) each sample needs."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.limits = Limits(**cfg["limits"])
        self.uid: int = cfg["uid"]
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
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of samples come back to be reaped
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
            check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
            self.features += ["netns", "ipcns"]
            self._build_root(self.cfg["staging"])
            self.jailed = True
            self.features += ["readonly-root", "chroot"]
        except OSError as exc:
            self.warnings.append(f"filesystem/network isolation unavailable ({exc}); samples can see the "
                                 "network and write where their uid may")
        try:
            self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
            self.new_pidns()
            self.features.append("pidns")
        except OSError as exc:
            self.pidns_fd = -1
            self.warnings.append(f"PID namespaces unavailable ({exc}); leftover processes are killed by uid")
        self.features.append("uid-drop")

    def _build_root(self, root: str) -> None:
        """Bind the whole tree read-only under `root`, add fresh /dev, /tmp, /run, then chroot."""
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("/", root, None, MS_BIND | MS_REC)
        self._expose(root, self.cfg.get("expose", []))
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4] for line in handle]
        for point in points:
            if point == root or point.startswith(root + "/"):
                try:
                    mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
                except OSError:
                    mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        for sub in ("run", "var/tmp"):
            target = os.path.join(root, sub)
            if os.path.isdir(target) and not os.path.islink(target):
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=755")
        # The only writable place: one sample at a time gets a fresh 0700 directory in it.
        mount("tmpfs", os.path.join(root, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={self.limits.disk_mb}m,nr_inodes=8192,mode=711")
        # A private /proc instance that lists only the caller's own uid's processes.
        mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        dev = os.path.join(root, "dev")
        mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
        for name in ("null", "zero", "random", "urandom"):
            target = os.path.join(dev, name)
            open(target, "w").close()
            mount(f"/dev/{name}", target, None, MS_BIND)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                           ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(link, os.path.join(dev, name))
        mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
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
                    mount("tmpfs", root + ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
                    masked.add(ancestor)
                target = root + path
                os.makedirs(target, mode=0o755, exist_ok=True)
                mount(path, target, None, MS_BIND | MS_REC)
                break

    def new_pidns(self) -> None:
        """Make the next fork PID 1 of a fresh PID namespace (children of the worker's own)."""
        check(libc.setns(self.pidns_fd, CLONE_NEWPID), "setns")
        check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")

    def workdir(self) -> str:
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
