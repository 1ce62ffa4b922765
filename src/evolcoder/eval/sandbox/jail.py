"""Jail set-up, done once per worker: namespaces, a read-only root, cgroups, a PID namespace.

Runs in the worker process before any sample; a missing mechanism becomes a warning and
the pool still runs with what is left (see `Sandbox.warnings`).
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil

from evolcoder.eval.sandbox.model import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 4, 38, 36
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 47, 4
_KEPT_MOUNT_FLAGS = MS_NOEXEC | 1024 | 2048 | 4096  # noexec, noatime, nodiratime, relatime

_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)

ROOT_JAIL = "root jail"
USERNS_JAIL = "user-namespace jail"
ROOT_UID_DROP = "root uid-drop (no namespaces)"
RLIMITS_ONLY = "rlimits only"

HOW_TO_CONTAIN = (
    "run as root, or enable unprivileged user namespaces: `sysctl -w user.max_user_namespaces=15000`, "
    "on Debian <= 10 `sysctl -w kernel.unprivileged_userns_clone=1`, on Ubuntu >= 23.10 "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`")

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    """Turn a libc -1 into an OSError with errno text."""
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(),
                     ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _flags(point: str) -> int:
    try:
        return os.statvfs(point).f_flag
    except OSError:
        return 0


def drop_capabilities() -> None:
    """Empty every capability set (bounding and ambient first, while CAP_SETPCAP is held)."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")


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
        self.userns = False
        self.containment = RLIMITS_ONLY

    def setup(self) -> None:
        if os.geteuid() != 0:
            self._setup_userns(set(self.cfg.get("disable", ())))
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
            self.containment = ROOT_UID_DROP
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
        self.containment = ROOT_JAIL if self.jailed and self.pidns_fd >= 0 else ROOT_UID_DROP

    def _setup_userns(self, disabled: set[str]) -> None:
        """Without root: the same jail inside an unprivileged user namespace.

        The worker maps only its own uid, so samples keep the user's uid but see a
        read-only system, a private tmpfs, no network and only their own processes. The
        process started by the pool stays outside as a holder while its child, PID 1 of a
        PID namespace owned by the new user namespace, becomes the worker (a proc instance
        and per-sample PID namespaces need that ownership).
        """
        if {"userns", "namespaces"} & disabled:
            self.warnings.append("user namespaces disabled by EVOLCODER_SANDBOX_DISABLE: "
                                 + ", ".join(sorted(disabled)))
        else:
            try:
                self._enter_userns()
            except OSError as exc:
                self.warnings.append(f"unprivileged user namespaces unavailable ({exc})")
        if not self.userns:
            self.warnings.append("not root and no user-namespace jail: samples run with your uid, can "
                                 "write and delete your files, reach the network and leave processes; "
                                 "only rlimits and process-group kills contain them. To fix: "
                                 + HOW_TO_CONTAIN)
            return
        try:
            self._build_root(self.cfg["staging"])
            self.jailed = True
            self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
            self.new_pidns()
        except OSError as exc:
            self.warnings.append(f"user-namespace jail could not be built ({exc}); only rlimits and "
                                 "process-group kills contain samples. To fix: " + HOW_TO_CONTAIN)
            self.userns = self.jailed = False
            self.pidns_fd = -1
            return
        self.features += ["userns", "netns", "ipcns", "readonly-root", "chroot", "pidns"]
        self.containment = USERNS_JAIL

    def _enter_userns(self) -> None:
        uid, gid = os.geteuid(), os.getegid()
        check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
        check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID),
              "unshare")
        alive_r, alive_w = os.pipe()
        pid = os.fork()
        if pid:  # the holder: keeps only the pipe whose closing tells the worker it is gone
            os.closerange(3, alive_w)
            os.closerange(alive_w + 1, 1 << 16)
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        os.close(alive_w)
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the pool kills the holder: the worker goes too
        if select.select([alive_r], [], [], 0)[0]:
            os._exit(1)  # the holder died before PDEATHSIG was armed
        os.set_inheritable(alive_r, False)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # samples share the uid: they must not ptrace this
        self.userns = True

    def _build_root(self, root: str) -> None:
        """Bind the whole tree read-only under `root`, add fresh /dev, /tmp, /run, then chroot."""
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("/", root, None, MS_BIND | MS_REC)
        masked = self._expose(root, self.cfg.get("expose", []), self.cfg.get("private", []) if self.userns else [])
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4] for line in handle]
        for point in points:
            if point == root or point.startswith(root + "/"):
                kept = _flags(point) & _KEPT_MOUNT_FLAGS if self.userns else 0
                try:
                    try:
                        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)
                    except OSError:
                        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept)
                except OSError:
                    if not any(point.startswith(root + m + "/") for m in masked):
                        raise  # else it lies under a mask and is out of sight anyway
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
    def _expose(root: str, paths: list[str], private: list[str]) -> set[str]:
        """Make `paths` (the interpreter, toolchains) reachable for the sandbox uid.

        A private parent such as /root (mode 700), or the user's home when samples run
        with the user's uid, is replaced in the jail by an empty tmpfs into which only the
        needed subtrees are bound back, which also hides the rest of it.
        """
        hidden = set(map(os.path.realpath, private))
        masked: set[str] = set()

        def mask(directory: str) -> None:
            if directory not in masked:
                mount("tmpfs", root + directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
                masked.add(directory)

        for path in sorted(set(map(os.path.realpath, paths))):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                ancestor = "/" + "/".join(parts[:i])
                if os.stat(ancestor).st_mode & 0o001 and ancestor not in hidden:
                    continue
                mask(ancestor)
                target = root + path
                os.makedirs(target, mode=0o755, exist_ok=True)
                mount(path, target, None, MS_BIND | MS_REC)
                break
        for directory in sorted(hidden):
            if directory != "/" and os.path.isdir(directory) and not any(
                    m == directory or directory.startswith(m + "/") for m in masked):
                mask(directory)
        return masked

    def isolate_sample(self, work: str) -> None:
        """In the sample (PID 1 of its namespace), under a user namespace: a mount namespace of
        its own with a proc instance that shows only its processes and a fresh /tmp where
        only `work` is writable (the sample owns /tmp here, so a mode would not stop it),
        then no capabilities."""
        if not self.userns:
            return
        check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={self.limits.disk_mb}m,nr_inodes=8192,mode=755")
        os.mkdir(work, 0o700)
        mount(work, work, None, MS_BIND)
        mount(None, "/tmp", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        if _KEYCTL is not None:  # the user's session keyring is not the sample's
            libc.syscall(_KEYCTL, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING, anonymous
        drop_capabilities()

    def new_pidns(self) -> None:
        """Make the next fork PID 1 of a fresh PID namespace (children of the worker's own)."""
        check(libc.setns(self.pidns_fd, CLONE_NEWPID), "setns")
        check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")

    def workdir(self) -> str:
        """A fresh directory owned by the sample uid: in the jail's tmpfs, else a host temp dir."""
        if self.userns:
            return "/tmp/w"  # made by the sample in a /tmp of its own (isolate_sample)
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
