"""In-worker lock-down, applied by the worker itself before the candidate's code runs.

    lock_down(job, work, device)   # rlimits, uid switch (root, weak mode), audit hook; irreversible

Under bubblewrap (see `evaluator_svc.sandbox`) the kernel layers are already in place and this adds the
rlimits and, as defence in depth with clearer error messages, the audit hook. In the weak mode (no
bubblewrap) it is the whole sandbox: `isolate_network` (call before any thread exists: namespaces are per
thread), a per-job uid when started as root, rlimits and the audit hook, which sees Python-level calls only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluator_svc.job import Job

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
LINUX_CAPABILITY_VERSION_3, CAP_DAC_READ_SEARCH = 0x20080522, 2
NETWORK_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}
PROCESS_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                  "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill")
PATH_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link",
               "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile")
# Readable outside the scratch dir and the Python/package roots: libraries, devices, sysfs, own /proc.
SYSTEM_READ_ROOTS = ("/usr/", "/lib/", "/lib64/", "/opt/", "/sys/", "/proc/", "/dev/", "/etc/ld.so",
                     "/etc/localtime")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Foreign calls and raw memory through ctypes (torch imports ctypes, so its libraries are loaded already).
CTYPES_EVENTS = {"ctypes.call_function", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.PyObj_FromPtr",
                 "ctypes.string_at", "ctypes.wstring_at", "ctypes.cdata"}


class SandboxViolation(PermissionError):
    """Raised by the audit hook."""


def isolate_network() -> str:
    """Enter an empty network namespace; 'netns', or 'audit' when the OS forbids it."""
    libc = ctypes.CDLL(None, use_errno=True)
    return "netns" if libc.unshare(CLONE_NEWNET) == 0 else "audit"


def make_audit_hook(scratch: str, code_roots: tuple[str, ...]):  # noqa: C901 - see the docstring
    """Refuse writes outside `scratch`, reads outside it, `code_roots` and SYSTEM_READ_ROOTS, other
    processes' /proc entries, process creation, signals, sockets, dlopen outside `code_roots` and every
    foreign call or raw memory access through ctypes. (Its complexity is the one dispatch over audit events, kept in
    one place so that the policy reads as a whole.)"""
    own_proc = (f"/proc/{os.getpid()}/", "/proc/self/", "/proc/thread-self/")
    read_roots = (scratch + os.sep, *(root.rstrip(os.sep) + os.sep for root in code_roots), *SYSTEM_READ_ROOTS)

    def inside(path: str | bytes) -> bool:
        real = os.path.realpath(os.fsdecode(path))
        return real == scratch or real.startswith(scratch + os.sep)

    def check_open(path: str | bytes, mode: str | None, flags: int | None) -> None:
        name = os.fsdecode(path)
        real = os.path.realpath(name)
        if (mode and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
            if not inside(name):
                raise SandboxViolation(f"blocked by sandbox: write outside the scratch dir: {name}")
        elif not real.startswith(read_roots) or (
                real.startswith("/proc/") and real[6:7].isdigit() and not real.startswith(own_proc)):
            raise SandboxViolation(f"blocked by sandbox: read of {name}")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            if isinstance(args[0], str | bytes):
                check_open(*args)
        elif event.startswith(PROCESS_EVENTS):
            raise SandboxViolation(f"blocked by sandbox: process creation or signalling ({event})")
        elif event.startswith("socket."):
            raise SandboxViolation(f"network access blocked by sandbox ({event})")
        elif event in PATH_EVENTS and not all(inside(a) for a in args[:2] if isinstance(a, str | bytes)):
            raise SandboxViolation(f"blocked by sandbox: {event} outside the scratch dir")
        elif event == "ctypes.dlopen" and not (args[0] and os.fsdecode(args[0]).startswith(code_roots)):
            raise SandboxViolation(f"blocked by sandbox: loading native library {args[0]!r}")
        elif event in CTYPES_EVENTS:
            raise SandboxViolation(f"blocked by sandbox: native code through ctypes ({event})")

    return hook


def _world_readable(*paths: str) -> bool:
    """Whether any uid can reach these directories (every ancestor traversable by others)."""
    for path in paths:
        current = Path(path).resolve()
        for part in (current, *current.parents):
            if not part.stat().st_mode & 0o005:
                return False
    return True


def drop_privileges(uid: int, *, keep_read: bool) -> None:
    """Switch to `uid`/`gid` with no supplementary groups and no capabilities, no_new_privs set.

    `keep_read` retains CAP_DAC_READ_SEARCH only, for interpreters installed under a private directory
    (e.g. pyenv in /root): the worker can then still import modules, but not write outside its scratch
    dir, signal other users' processes, read their /proc environ, or exceed RLIMIT_NPROC. (This is the
    weak mode's gap that bubblewrap closes: there the worker sees only a minimal read-only view.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if keep_read:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if keep_read:
        header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(1 << CAP_DAC_READ_SEARCH, 1 << CAP_DAC_READ_SEARCH, 0, 0, 0, 0)
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _status_kib(field: str) -> int:
    """A size field of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _cap(kind: int, value: int) -> None:
    """Sets soft and hard limit `kind` to `value`, or to the hard limit already lower."""
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def lock_down(job: Job, work: str, device: str) -> None:
    """Rlimits, unprivileged uid (when root, weak mode) and the audit hook; irreversible for this process.
    `work` is the writable scratch dir (the cwd), beside the job's inputs."""
    limits = job.limits
    parent = os.getppid()
    # The candidate gets memory_mb on top of the worker's own footprint (torch, CUDA context, data). CUDA
    # reserves huge virtual ranges, so there the data segment is capped instead of the address space.
    name, limit = ("VmData", resource.RLIMIT_DATA) if device.startswith("cuda") else ("VmSize", resource.RLIMIT_AS)
    memory = _status_kib(name) * 1024 + limits.memory_mb * 1024 * 1024
    resource.setrlimit(limit, (memory, memory))
    cpu = limits.cpu_seconds or int(limits.threads * job.timeout_s + 30)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    file_size = limits.file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _cap(resource.RLIMIT_NOFILE, limits.open_files)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing
    if job.kernel_sandbox:  # the sandbox's own user namespace: counts this worker's tasks only (unless root-mapped)
        _cap(resource.RLIMIT_NPROC, limits.max_processes)
    elif os.geteuid() == 0 and limits.drop_privileges:
        uid = job.uid_base + os.getpid()
        inputs = os.path.dirname(work)
        os.chown(inputs, uid, uid)
        for entry in os.listdir(inputs):
            os.chown(os.path.join(inputs, entry), uid, uid)
        _cap(resource.RLIMIT_NPROC, limits.max_processes)
        drop_privileges(uid, keep_read=not _world_readable(sys.base_prefix, sys.prefix))
    # Die with the evaluator (set after the uid switch, which clears it): a killed service leaves no training behind.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    if limits.python_guards:
        import torch

        package = os.path.dirname(os.path.abspath(__file__))
        roots = tuple({os.path.dirname(torch.__file__), sys.prefix, sys.base_prefix, package})
        sys.addaudithook(make_audit_hook(work, roots))
