"""The worker's seccomp filter, compiled by libseccomp (through pyseccomp) and loaded by bubblewrap.

    program = seccomp.program()    # BPF bytes for ``bwrap --seccomp FD``; raises SeccompUnavailable

Default allow, with a deny list: tracing and other processes' memory, mounts and namespaces, bpf, keyrings,
kernel modules, io_uring (it bypasses per-syscall filtering), perf, userfaultfd, sockets of every family,
memory that no rlimit counts (memfd_create, memfd_secret, SysV shmget: the sized /tmp and /dev/shm mounts are
the only shared memory left, and a cgroup counts them where the host has one), and process creation (fork,
vfork, clone without CLONE_THREAD; clone3 answers ENOSYS so that glibc falls back to clone, whose flags the
filter can see). Threads stay allowed. Syscalls of other architectures
(x32/i386 entry points) are killed by libseccomp's default bad-arch action.
"""

from __future__ import annotations

import errno
import functools
import os

CLONE_THREAD = 0x00010000
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "mount_setattr", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "name_to_handle_at", "open_by_handle_at",
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "swapon", "swapoff", "reboot", "syslog", "acct", "quotactl", "iopl", "ioperm", "fork", "vfork",
    "memfd_create", "memfd_secret", "shmget",
)
SOCKETS = ("socket", "socketpair")  # fail with ENETDOWN, which the worker reports as "network access blocked"


class SeccompUnavailable(RuntimeError):
    """libseccomp or its Python bindings are missing."""


@functools.cache
def program() -> bytes:
    """The compiled filter (cached per process)."""
    try:
        import pyseccomp
    except (ImportError, OSError) as exc:  # OSError: the bindings load libseccomp.so.2 on import
        raise SeccompUnavailable(f"pyseccomp/libseccomp not available ({type(exc).__name__}: {exc})") from exc
    arch = pyseccomp.system_arch()
    deny = pyseccomp.ERRNO(errno.EPERM)
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for names, action in ((DENIED, deny), (SOCKETS, pyseccomp.ERRNO(errno.ENETDOWN))):
        for name in names:
            if pyseccomp.resolve_syscall(arch, name) >= 0:  # negative: no such syscall on this architecture
                rules.add_rule(action, name)
    rules.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_THREAD, 0))
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("seccomp-bpf")
    with os.fdopen(fd, "w+b") as fh:
        rules.export_bpf(fh)
        fh.seek(0)
        return fh.read()
