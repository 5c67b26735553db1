"""The isolation layers a host offers and the argv/environment that apply them to one worker.

    host_layers(limits)        # the layers a job gets on this host, for logs and GetCapacity
    missing_layers()           # required layers this host lacks, with the reason ({} when complete)
    bwrap_argv(...) + worker   # the bubblewrap command line `evaluator_svc.sandbox` runs a worker under

What each layer does and why bubblewrap: see `evaluator_svc.sandbox`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evaluator_svc import seccomp
from evaluator_svc.cgroups import cgroup_host
from evaluator_svc.datasets import packaged_data_dirs
from evaluator_svc.job import WORK_DIR, SandboxLimits

ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_MOUNT = "/opt/deltanas"  # PYTHONPATH inside the sandbox: only evaluator_svc is there
SYSTEM_VIEW = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime")
KERNEL_LAYERS = ("bubblewrap", "user-ns", "mount-ns", "pid-ns", "net-ns", "ipc-ns", "no-capabilities",
                 "no-new-privs", "sized-tmpfs")
MASK_BYTES = 4096  # the empty tmpfs over packaged data dirs


@dataclass(frozen=True)
class Host:
    """What this host provides: a working bwrap and a compiled seccomp program, or why not."""

    bwrap: str | None
    seccomp: bytes | None
    problems: dict[str, str]


@functools.cache
def probe() -> Host:
    """Find bwrap and libseccomp and start one empty sandboxed interpreter (once per process)."""
    problems: dict[str, str] = {}
    try:
        program: bytes | None = seccomp.program()
    except seccomp.SeccompUnavailable as exc:
        program, problems["seccomp"] = None, str(exc)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        problems["bubblewrap"] = "bwrap not found on PATH (apt-get install bubblewrap)"
        return Host(None, program, problems)
    with tempfile.TemporaryDirectory(prefix="deltanas-probe-") as scratch, program_fd(program) as fd:
        (Path(scratch) / WORK_DIR).mkdir()
        argv = [*bwrap_argv(bwrap, Path(scratch), fd, "cpu", SandboxLimits()), sys.executable, "-S", "-c", ""]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, pass_fds=(fd,) if fd else (),
                              env=minimal_env(Path(scratch), SandboxLimits(), kernel=True), check=False)
    if done.returncode != 0:
        problems["bubblewrap"] = f"bwrap cannot start a sandbox here: {done.stderr.strip()[:300]}"
        return Host(None, program, problems)
    return Host(bwrap, program, problems)


def missing_layers() -> dict[str, str]:
    """Required layers this host cannot provide, with the reason; empty when the sandbox is complete."""
    return probe().problems


class SandboxUnavailable(RuntimeError):
    """A host that runs candidates lacks a required sandbox layer and allow_weak_sandbox is off."""


def require_sandbox(missing: dict[str, str], allow_weak: bool, where: str) -> None:
    """Raises SandboxUnavailable naming `where` and each missing layer, unless none is missing or weak is allowed."""
    if missing and not allow_weak:
        raise SandboxUnavailable(f"evaluator sandbox incomplete on {where}: "
                                 + "; ".join(f"{k}: {v}" for k, v in missing.items())
                                 + " (install it, or set allow_weak_sandbox = true to run without)")


def kernel_sandbox(limits: SandboxLimits) -> bool:
    return bool(probe().bwrap) and limits.kernel_sandbox


def _nproc_counts(limits: SandboxLimits) -> bool:
    """Whether RLIMIT_NPROC caps a worker's threads: its uid is not root and owns nothing else in its namespace
    (the kernel exempts root-mapped tasks)."""
    if kernel_sandbox(limits):
        return os.geteuid() != 0  # bubblewrap maps the sandbox uid onto the service's own
    return os.geteuid() == 0 and limits.drop_privileges  # weak mode: a fresh uid per job


def host_layers(limits: SandboxLimits) -> tuple[str, ...]:
    """Names of the layers a job with `limits` gets on this host ("pids-cap" and "memory-cap" name a cgroup's)."""
    host = probe()
    if kernel_sandbox(limits):
        layers = [*KERNEL_LAYERS, *(["seccomp"] if host.seccomp else [])]
    else:
        uid_drop = os.geteuid() == 0 and limits.drop_privileges
        layers = ["weak-mode", "net-ns-unshare", *(["uid-drop"] if uid_drop else [])]
    cgroup = cgroup_host(limits.cgroup)
    if cgroup.layer:
        layers += [cgroup.layer, "pids-cap", "memory-cap"]
    elif _nproc_counts(limits):
        layers.append("pids-cap")  # RLIMIT_NPROC
    return (*layers, "rlimits", *(["audit-hook"] if limits.python_guards else []))


def describe_caps(limits: SandboxLimits) -> str:
    """One line for the start-up log: which layer caps a candidate's processes and memory on this host."""
    cgroup = cgroup_host(limits.cgroup)
    if cgroup.layer:
        return (f"{cgroup.layer}: pids.max {limits.max_processes}, memory {limits.runtime_mb + limits.memory_mb} "
                "MB including tmpfs and shared memory")
    threads = (f"RLIMIT_NPROC {limits.max_processes}" if _nproc_counts(limits) else
               "not capped (root service without a cgroup: RLIMIT_NPROC does not count root-mapped tasks)")
    tmpfs = f"tmpfs {limits.scratch_mb} MB scratch + 2 x {limits.tmp_mb} MB" if kernel_sandbox(limits) else \
        f"scratch on the host disk ({limits.file_mb} MB per file)"
    return (f"no per-candidate cgroup ({cgroup.why}): memory capped by RLIMIT_AS/DATA ({limits.memory_mb} MB) + "
            f"{tmpfs}, memfd and SysV shm refused; processes and threads {threads}")


@contextlib.contextmanager
def program_fd(program: bytes | None):
    """A readable fd holding the seccomp program for ``bwrap --seccomp``, or None."""
    if program is None:
        yield None
        return
    fd = os.memfd_create("deltanas-seccomp")
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _bind_view(paths: list[str]) -> list[str]:
    """--ro-bind (or --symlink, for links such as /lib -> usr/lib) of each path that exists."""
    args: list[str] = []
    for path in dict.fromkeys(paths):
        if os.path.islink(path) and path in SYSTEM_VIEW:
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _tmpfs(path: str, mb: float, perms: str = "0755") -> list[str]:
    return ["--perms", perms, "--size", str(max(int(mb * 1024 * 1024), MASK_BYTES)), "--tmpfs", path]


def bwrap_argv(bwrap: str, scratch: Path, seccomp_fd: int | None, device: str, limits: SandboxLimits) -> list[str]:
    prefixes = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})
    work = str(scratch / WORK_DIR)
    argv = [bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            # the private /tmp first: binds after it stay visible when the venv or the scratch lives under /tmp
            "--proc", "/proc", "--dev", "/dev", *_tmpfs("/tmp", limits.tmp_mb, "1777"),
            *_tmpfs("/dev/shm", limits.tmp_mb, "1777"),
            *_bind_view([*SYSTEM_VIEW, *prefixes]),
            "--ro-bind", str(PACKAGE_DIR), f"{PACKAGE_MOUNT}/{PACKAGE_DIR.name}",
            "--ro-bind", str(scratch), str(scratch), *_tmpfs(work, limits.scratch_mb), "--chdir", work]
    for hidden in packaged_data_dirs():
        argv += _tmpfs(hidden, 0, "0555")
    if device.startswith("cuda"):
        argv += ["--ro-bind", "/sys", "/sys"]
        for name in sorted(os.listdir("/dev")):
            if name.startswith("nvidia"):
                argv += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--remount-ro", "/", "--"]


def minimal_env(work: Path, limits: SandboxLimits, *, kernel: bool) -> dict[str, str]:
    env = {key: os.environ[key] for key in ENV_ALLOWLIST if key in os.environ}
    threads = str(limits.threads)
    env.update(HOME=str(work), TMPDIR=str(work),
               PYTHONPATH=PACKAGE_MOUNT if kernel else str(PACKAGE_DIR.parent), PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, MALLOC_ARENA_MAX="2")
    return env
