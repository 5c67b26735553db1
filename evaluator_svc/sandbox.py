"""Run one evaluation job in an isolated worker process (``python -m evaluator_svc.worker``).

    result = run_job(job, data, timeout_s=60, cancel=event)   # never raises for candidate misbehaviour

Trusted scoring: the worker gets the training split and the test *images* only; it returns predicted
class indices through a pipe (`evaluator_svc.scoring`), and this process computes the accuracy from the
test labels, which never leave it. No key or secret exists in the worker, so there is nothing to forge.
This process reads nothing the worker controls by path: the report comes through the pipe, the stage and
the logs through descriptors of files it opened itself before the worker started.

Layers, outermost first (what a host offers and the bubblewrap argv: `evaluator_svc.isolation`; the
in-worker part: `evaluator_svc.lockdown`):

* a cgroup per candidate where the host offers one (`evaluator_svc.cgroups`: v2 with delegated controllers,
  else v1): pids.max and a memory limit that counts the worker's tmpfs, shared memory and page cache; the
  worker joins it before it starts, and on its end every process left in it is killed and the cgroup removed;
* bubblewrap (``bwrap``): new user, mount, pid, network, ipc, uts and cgroup namespaces; uid/gid 65534
  inside; a read-only view of only /usr (+ /lib, /bin links), the interpreter, the virtualenv and
  ``evaluator_svc`` (the packaged data files of the bundled datasets masked by empty tmpfs); the job's
  inputs read-only, and as the only writable places sized tmpfs mounts: the scratch dir (``scratch_mb``, the
  worker's cwd, HOME and TMPDIR), /tmp and /dev/shm (``tmp_mb`` each), all gone with the sandbox; a fresh
  /proc of the pid namespace; an empty capability set, no_new_privs, no further user namespaces; SIGKILL
  when the service dies;
* seccomp (`evaluator_svc.seccomp`, loaded by bwrap before it execs the worker): no ptrace, mount,
  unshare, bpf, keyctl, io_uring, sockets of any family, memfd or SysV shared memory, or new processes
  (threads only);
* rlimits (AS/DATA, CPU, FSIZE, CORE, NOFILE, NPROC) and an audit hook in the worker (defence in depth,
  clearer reasons);
* environment stripped to ENV_ALLOWLIST; stdout/stderr to files read back truncated through our own
  descriptors; new session; on timeout, or when the caller cancels, the process group and the cgroup get
  SIGKILL, which takes the pid namespace; the scratch dir is removed however deep a tree the worker left.

A host without cgroups falls back, per candidate, to: memory = RLIMIT_AS (RLIMIT_DATA on CUDA) of
``memory_mb`` plus the sized tmpfs mounts (``scratch_mb`` + 2 x ``tmp_mb``), with memfd and SysV shm
refused by seccomp; processes and threads = RLIMIT_NPROC (``max_processes``), counted in the sandbox's own
user namespace, which the kernel enforces only when the service is not root (as in the images and the Helm
chart); a root service there has no thread cap beyond the memory limit on thread stacks, and its
sandbox_layers lack ``pids-cap``.

Weak mode (no bwrap, or `SandboxLimits.kernel_sandbox = False`): a plain subprocess that leaves the
network with ``unshare(CLONE_NEWNET)``, switches to a per-job uid when root (RLIMIT_NPROC then counts) and
relies on the audit hook for files, which C-level I/O (ctypes, ``torch.from_file``) gets around; its scratch
dir is on the host disk (``file_mb`` per file). The service refuses to start in weak mode unless
``allow_weak_sandbox = true``.

Why bubblewrap: it is packaged by Debian (``apt-get install bubblewrap``), small (one setuid-free binary
when the service is root or user namespaces are allowed), audited, used by Flatpak, and needs no config
file; it loads a seccomp program we compile with libseccomp, the reference seccomp library.
nsjail does the same plus cgroup limits, but is not packaged by Debian 12 (a build from source with
protobuf) and its config language is one more thing to keep; hand-written unshare/mount/pivot_root/capset
calls through ctypes (what the weak mode starts from) are easy to get subtly wrong (mount propagation,
/proc, setgroups, the order of uid maps) and need root. Open: the worker could still exec another binary
of the read-only view.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from deltanas.errors import Cancelled
from evaluator_svc.cgroups import JobGroup, cgroup_host
from evaluator_svc.datasets import Dataset
from evaluator_svc.isolation import bwrap_argv, kernel_sandbox, minimal_env, probe, program_fd
from evaluator_svc.job import DATA_FILES, JOB_FILE, STAGE_FILE, WORK_DIR, Job, SandboxLimits, data_file
from evaluator_svc.results import MAX_LOG_CHARS, EvalResult, Stage, printable
from evaluator_svc.scoring import WORKER_STAGES, MalformedReport, WorkerReport, frame_limit, score
from evaluator_svc.scratch import remove_tree

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a running worker is checked for its end, the timeout and the caller's cancel
__all__ = ["run_job"]


def _write_data(scratch: Path, data: Dataset) -> None:
    arrays = {"train_images": data.train.images, "train_labels": data.train.labels, "test_images": data.test.images}
    for name in DATA_FILES:
        np.save(scratch / data_file(name), arrays[name].numpy())


def _read_logs(files: list[tuple[str, BinaryIO]], limit: int) -> str:
    """Head and tail of each captured stream, read through our own descriptors (the worker may replace
    the paths with symlinks)."""
    parts = []
    for name, fh in files:
        size = os.fstat(fh.fileno()).st_size
        if not size:
            continue
        if size <= limit:
            text = os.pread(fh.fileno(), size, 0).decode("utf-8", "replace")
        else:
            head = os.pread(fh.fileno(), limit // 2, 0).decode("utf-8", "replace")
            tail = os.pread(fh.fileno(), limit // 2, size - limit // 2).decode("utf-8", "replace")
            text = f"{head}\n... [{size - limit} bytes truncated] ...\n{tail}"
        parts.append(f"--- {name} ---\n{text}")
    return "".join(parts)


class _PipeReader(threading.Thread):
    """Drains the result pipe into memory, at most `limit` + 1 bytes (more marks the frame oversized)."""

    def __init__(self, fd: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.limit, self.data = fd, limit, bytearray()

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while len(self.data) <= self.limit and (chunk := os.read(self.fd, 1 << 16)):
                self.data += chunk
        os.close(self.fd)  # a worker still writing gets EPIPE


def _uid_alive(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                return True
    return False


def kill_uid(uid: int) -> None:
    """SIGKILL every process left with `uid` (weak mode: ones that left the process group with setsid).

    Runs ``kill -KILL -1`` as that uid: kill(-1) is one kernel pass over the task list, so a fork bomb
    cannot outrun it. Spawned with exec (no fork of this possibly multi-threaded process in Python).
    """
    kill = shutil.which("kill", path="/usr/bin:/bin")
    if kill is None or not _uid_alive(uid):
        return
    subprocess.run([kill, "-KILL", "-1"], user=uid, group=uid, extra_groups=[], env={},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, timeout=10)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _wait(proc: subprocess.Popen, timeout_s: float, cancel: threading.Event | None) -> tuple[str, object | None]:
    """("exited", its rusage) when the worker ended by itself, else ("timeout" | "cancelled", None) while it runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return "exited", usage
        if cancel is not None and cancel.is_set():
            return "cancelled", None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout", None
        if cancel is not None:
            cancel.wait(min(POLL_S, remaining))
        else:
            time.sleep(min(POLL_S, remaining))


def _reap(proc: subprocess.Popen) -> object:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def run_job(job: Job, data: Dataset, *, timeout_s: float, cancel: threading.Event | None = None) -> EvalResult:
    """Run `job` in a fresh worker process; never raises for candidate misbehaviour. Raises Cancelled when
    `cancel` is set before the worker ends (it is killed then); ValueError when its limits still leave the threads
    to an executor (SandboxLimits.share)."""
    if job.limits.threads < 1:
        raise ValueError(f"limits.threads: {job.limits.threads}; give the worker its share (SandboxLimits.share)")
    scratch = Path(tempfile.mkdtemp(prefix="deltanas-eval-", dir=job.limits.scratch_root))
    limits = job.limits
    try:
        memory = (limits.runtime_mb + limits.memory_mb) * 1024 * 1024
        with cgroup_host(limits.cgroup).job(pids=limits.max_processes, memory_bytes=memory) as group:
            return _run_in(scratch, job, data, timeout_s, group, cancel)
    finally:
        remove_tree(scratch)


def _run_in(scratch: Path, job: Job, data: Dataset, timeout_s: float, group: JobGroup | None,
            cancel: threading.Event | None) -> EvalResult:
    cid = printable(job.candidate_id)
    host = probe()
    kernel = kernel_sandbox(job.limits)
    job = dataclasses.replace(job, kernel_sandbox=kernel)
    _write_data(scratch, data)
    (scratch / JOB_FILE).write_text(job.to_json())
    work = scratch / WORK_DIR
    work.mkdir()
    read_end, write_end = os.pipe()
    reader = _PipeReader(read_end, frame_limit(len(data.test.labels)))
    start = time.perf_counter()
    with open(scratch / "stdout.log", "w+b") as out, open(scratch / "stderr.log", "w+b") as err, \
            open(scratch / STAGE_FILE, "w+b") as stage, program_fd(host.seccomp if kernel else None) as seccomp_fd:
        worker = [sys.executable, "-m", "evaluator_svc.worker", str(scratch / JOB_FILE), str(write_end),
                  str(stage.fileno())]
        argv = [*(bwrap_argv(host.bwrap, scratch, seccomp_fd, job.device, job.limits) if kernel else []), *worker]
        fds = tuple(fd for fd in (write_end, stage.fileno(), seccomp_fd) if fd is not None)
        env = minimal_env(work, job.limits, kernel=kernel)
        try:
            proc = subprocess.Popen(group.enter(argv) if group else argv, cwd=work, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    pass_fds=fds)
        finally:
            os.close(write_end)
        reader.start()
        ended, usage = _wait(proc, timeout_s, cancel)
        if ended == "timeout":
            log.warning("candidate %s: timeout after %.1f s, killing process group %d", cid, timeout_s, proc.pid)
        elif ended == "cancelled":
            log.info("candidate %s: the caller cancelled, killing process group %d", cid, proc.pid)
        usage = _end(proc, ended, usage, group, job, kernel)
        reader.join(timeout=10)
        # bwrap exits with 128 + N when the worker died of signal N
        returncode = 128 - proc.returncode if kernel and proc.returncode > 128 else proc.returncode
        measured = _measured(time.perf_counter() - start, usage, group, len(data.test.labels))
        logs = _read_logs([("stdout", out), ("stderr", err)], MAX_LOG_CHARS // 2)
        output_full = max(os.fstat(f.fileno()).st_size for f in (out, err)) >= job.limits.file_mb * 1024 * 1024
        last_stage = os.pread(stage.fileno(), 64, 0).decode("ascii", "replace").strip()
    if ended == "cancelled":
        raise Cancelled(f"candidate {cid}: the caller cancelled; its worker was killed")
    oom = group.oom_kills() if group is not None else 0
    if ended == "timeout":
        result = _died(last_stage, f"timeout after {timeout_s:.1f} s (process group killed)", logs)
    elif reader.data:
        result = _scored(bytes(reader.data), data, logs)
    else:
        result = _died(last_stage, _death_reason(returncode, output_full, oom, job.limits, logs), logs)
    result.metrics.update(measured)
    log.info("candidate %s: worker exited %s after %.2f s (%s)", cid, returncode, measured["worker_wall_seconds"],
             "valid" if result.valid else f"{result.failure_stage.name}: {printable(result.failure_reason, 120)}")
    return result


def _end(proc: subprocess.Popen, ended: str, usage: object, group: JobGroup | None, job: Job, kernel: bool) -> object:
    """Kills what is left of the worker (its process group: the stragglers too, and under bwrap its pid namespace
    dies with it; its cgroup; a weak-mode uid) and reaps it; its rusage."""
    _kill_group(proc.pid)
    if group is not None:
        group.kill()
    if ended != "exited":
        usage = _reap(proc)
    if not kernel and os.geteuid() == 0 and job.limits.drop_privileges:
        kill_uid(job.uid_base + proc.pid)
    return usage


def _measured(wall: float, usage: object, group: JobGroup | None, test_samples: int) -> dict[str, float]:
    """What this process measured of the worker itself (the worker's own figures are unverified)."""
    measured = {"worker_wall_seconds": wall, "test_samples": float(test_samples)}
    if usage is not None:
        measured["worker_cpu_seconds"] = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
        measured["worker_max_rss_mb"] = usage.ru_maxrss / 1024  # type: ignore[attr-defined]
    if group is not None and (peak := group.peak_bytes()):
        measured["worker_peak_memory_mb"] = peak / 2**20
    return measured


def _scored(frame: bytes, data: Dataset, logs: str) -> EvalResult:
    """The worker's report scored against the test labels; a malformed one fails at EVALUATE."""
    labels = data.test.labels.numpy()
    try:
        report = WorkerReport.decode(frame, count=len(labels), num_classes=data.num_classes)
    except MalformedReport as exc:
        return EvalResult.failure(Stage.EVALUATE, f"worker result rejected: {exc}", logs=logs)
    return dataclasses.replace(score(report, labels, data.num_classes), logs=logs)


def _died(last_stage: str, reason: str, logs: str) -> EvalResult:
    """A failure at the last worker stage it announced (INSTANTIATE when it announced none it knows)."""
    stage = next((s for s in WORKER_STAGES if s.name == last_stage), Stage.INSTANTIATE)
    return EvalResult.failure(stage, reason, logs=logs)


def _death_reason(returncode: int, output_full: bool, oom_kills: int, limits: SandboxLimits, logs: str) -> str:
    if oom_kills:
        return (f"memory limit exceeded (cgroup: {limits.runtime_mb + limits.memory_mb} MB including tmpfs and "
                "shared memory)")
    if returncode == -signal.SIGXCPU:
        return "CPU time limit exceeded"
    if output_full:
        return f"output limit exceeded ({limits.file_mb} MB)"
    if "MemoryError" in logs or "bad_alloc" in logs or returncode == -signal.SIGKILL:
        return "memory limit exceeded"
    if returncode < 0:
        return f"worker killed by signal {signal.Signals(-returncode).name}"
    return f"worker exited with status {returncode} without a result"
