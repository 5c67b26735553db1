"""Run one evaluation job in an isolated worker process (``python -m evaluator_svc.worker``).

Isolation, outermost first (see ``evaluator_svc.worker.lock_down`` for the in-worker part):

* fresh scratch directory as cwd and HOME; the job and its data go in as files (the worker deletes the
  data once loaded, so the candidate cannot read test labels), the result comes back as ``result.json``
  signed with an HMAC key passed on stdin before the candidate runs (a forged result is rejected);
  stdout/stderr go to files, read back truncated through the parent's own descriptors;
* environment stripped to ENV_ALLOWLIST plus PYTHONPATH/OMP_NUM_THREADS set here: no secrets;
* new session and process group; on timeout the whole group gets SIGKILL and is reaped, and when the
  worker ran under its own uid every process left with that uid is killed too (catches setsid escapes);
* in the worker: network namespace (``unshare(CLONE_NEWNET)``, no interfaces up) or, where the OS
  forbids it, an audit hook that refuses sockets; rlimits (AS/DATA, CPU, FSIZE, NPROC, CORE); when
  started as root, a switch to a per-job unprivileged uid, which makes RLIMIT_NPROC effective (root
  ignores it) and lets file permissions block writes outside the scratch dir; an audit hook refusing
  process creation, signals, ctypes loading of non-venv libraries and writes outside the scratch dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from evaluator_svc.datasets import Dataset
from evaluator_svc.stages import MAX_LOG_CHARS, EvalResult, Stage

log = logging.getLogger(__name__)

ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
UID_BASE = 200_000
JOB_FILE, RESULT_FILE, STAGE_FILE = "job.json", "result.json", "stage"


@dataclass
class SandboxLimits:
    """Resource limits of one sandboxed worker."""

    memory_mb: int = field(default=4096, metadata={
        "help": "memory the candidate may add to the worker's own footprint after setup (torch and data "
                "loaded): RLIMIT_AS on CPU, RLIMIT_DATA on CUDA"})
    cpu_seconds: int | None = field(default=None, metadata={
        "help": "CPU-time limit (RLIMIT_CPU); default: threads x wall timeout + 30"})
    file_mb: int = field(default=64, metadata={
        "help": "largest file the worker may write, stdout/stderr included (RLIMIT_FSIZE)"})
    max_processes: int = field(default=64, metadata={
        "help": "processes + threads of the worker's own uid (RLIMIT_NPROC; set when a root service drops privileges)"})
    threads: int = field(default=1, metadata={"help": "OMP/MKL/torch intra-op threads of the worker"})
    gpu_memory_fraction: float | None = field(default=None, metadata={
        "help": "torch.cuda.set_per_process_memory_fraction for the worker when CUDA is used"})
    drop_privileges: bool = field(default=True, metadata={
        "help": "when started as root, run the candidate under a fresh unprivileged uid"})
    audit_hook: bool = field(default=True, metadata={
        "help": "install the in-worker audit hook (disable only to test the OS-level layers)"})
    scratch_root: str | None = field(default=None, metadata={"help": "parent of per-job scratch dirs"})


@dataclass
class Job:
    """What the worker needs; serialized to job.json in the scratch dir."""

    candidate_id: str
    code: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transform: str
    prm: dict
    batch: int
    epochs: int
    device: str
    limits: SandboxLimits
    timeout_s: float
    bf16: bool = False
    channels_last: bool = False
    seed: int = 42
    uid_base: int = UID_BASE


def _minimal_env(scratch: Path, limits: SandboxLimits) -> dict[str, str]:
    env = {key: os.environ[key] for key in ENV_ALLOWLIST if key in os.environ}
    package_root = str(Path(__file__).resolve().parent.parent)
    threads = str(limits.threads)
    env.update(HOME=str(scratch), TMPDIR=str(scratch), PYTHONPATH=package_root, PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, MALLOC_ARENA_MAX="2")
    return env


def _write_data(scratch: Path, data: Dataset) -> None:
    for split_name, split in (("train", data.train), ("test", data.test)):
        np.save(scratch / f"{split_name}_images.npy", split.images.numpy())
        np.save(scratch / f"{split_name}_labels.npy", split.labels.numpy())


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


def _read_small(path: Path, limit: int = 1024 * 1024) -> str | None:
    """A worker-written file, never through a symlink and at most `limit` bytes; None when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _uid_alive(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                return True
    return False


def kill_uid(uid: int) -> None:
    """SIGKILL every process left with `uid` (e.g. ones that left the process group with setsid).

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


def run_job(job: Job, data: Dataset, *, timeout_s: float) -> EvalResult:
    """Run `job` in a fresh worker process; never raises for candidate misbehaviour."""
    limits = job.limits
    scratch = Path(tempfile.mkdtemp(prefix="deltanas-eval-", dir=limits.scratch_root))
    try:
        return _run_in(scratch, job, data, timeout_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_in(scratch: Path, job: Job, data: Dataset, timeout_s: float) -> EvalResult:
    cid = job.candidate_id
    _write_data(scratch, data)
    (scratch / JOB_FILE).write_text(json.dumps(asdict(job)))
    key = secrets.token_bytes(32)
    start = time.perf_counter()
    with open(scratch / "stdout.log", "w+b") as out, open(scratch / "stderr.log", "w+b") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "evaluator_svc.worker", str(scratch / JOB_FILE)], cwd=scratch,
            env=_minimal_env(scratch, job.limits), stdin=subprocess.PIPE, stdout=out, stderr=err,
            start_new_session=True, close_fds=True)
        timed_out = False
        try:
            proc.communicate(key.hex().encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            log.warning("candidate %s: timeout after %.1f s, killing process group %d", cid, timeout_s, proc.pid)
        _kill_group(proc.pid)  # the worker's stragglers too, whether it timed out or not
        proc.wait()
        if os.geteuid() == 0 and job.limits.drop_privileges:
            kill_uid(job.uid_base + proc.pid)
        wall = time.perf_counter() - start
        logs = _read_logs([("stdout", out), ("stderr", err)], MAX_LOG_CHARS // 2)
        output_full = max(os.fstat(f.fileno()).st_size for f in (out, err)) >= job.limits.file_mb * 1024 * 1024
    if timed_out:
        result = _died(scratch, f"timeout after {timeout_s:.1f} s (process group killed)", logs)
    else:
        result = _collect(scratch, key, proc.returncode, output_full, job.limits, logs)
    result.metrics["worker_wall_seconds"] = wall
    log.info("candidate %s: worker exited %s after %.2f s (%s)", cid, proc.returncode, wall,
             "valid" if result.valid else f"{result.failure_stage.name}: {result.failure_reason[:120]}")
    return result


def sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def _died(scratch: Path, reason: str, logs: str) -> EvalResult:
    """A failure at the last stage the worker announced."""
    name = (_read_small(scratch / STAGE_FILE, 64) or "").strip()
    stage = Stage[name] if name in Stage.__members__ else Stage.INSTANTIATE
    return EvalResult.failure(stage, reason, logs=logs)


def _collect(scratch: Path, key: bytes, returncode: int, output_full: bool, limits: SandboxLimits,
             logs: str) -> EvalResult:
    """The worker's signed result.json, or a failure derived from how it died."""
    text = _read_small(scratch / RESULT_FILE)
    if text is not None:
        try:
            envelope = json.loads(text)
            if not hmac.compare_digest(sign(key, envelope["payload"]), envelope["signature"]):
                raise ValueError("bad signature")
            raw = json.loads(envelope["payload"])
            stage = Stage[raw["stage"]] if raw.get("stage") else None
            return EvalResult(valid=raw["valid"], accuracy=raw.get("accuracy"), failure_stage=stage,
                              failure_reason=raw.get("reason", ""), metrics=raw.get("metrics", {}), logs=logs)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _died(scratch, f"worker result failed verification ({type(exc).__name__})", logs)
    if returncode == -signal.SIGXCPU:
        reason = "CPU time limit exceeded"
    elif output_full:
        reason = f"output limit exceeded ({limits.file_mb} MB)"
    elif "MemoryError" in logs or "bad_alloc" in logs or returncode == -signal.SIGKILL:
        reason = "memory limit exceeded"
    elif returncode < 0:
        reason = f"worker killed by signal {signal.Signals(-returncode).name}"
    else:
        reason = f"worker exited with status {returncode} without a result"
    return _died(scratch, reason, logs)
