"""Sandboxed worker: ``python -m evaluator_svc.worker <scratch>/job.json``.

Trusted phase: isolate the network (before any thread exists: namespaces are per thread), import torch,
load the job's data. Then `lock_down` (rlimits, unprivileged uid, audit hook) and only then run the
candidate's code: INSTANTIATE, FORWARD, TRAIN, EVALUATE. Writes result.json; the stage reached is kept in
the `stage` file so the parent can blame the right stage if the process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import hmac
import json
import os
import resource
import signal
import socket
import sys
import time
import types
from pathlib import Path

from evaluator_svc.stages import Stage

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


class SandboxViolation(PermissionError):
    """Raised by the audit hook."""


class CandidateFailure(Exception):
    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def isolate_network() -> str:
    """Enter an empty network namespace; 'netns', or 'audit' when the OS forbids it."""
    libc = ctypes.CDLL(None, use_errno=True)
    return "netns" if libc.unshare(CLONE_NEWNET) == 0 else "audit"


def _make_audit_hook(scratch: str, code_roots: tuple[str, ...]):
    """Refuse writes outside `scratch`, reads outside it, `code_roots` and SYSTEM_READ_ROOTS, other
    processes' /proc entries, process creation, signals, sockets and dlopen outside `code_roots`."""
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
    dir, signal other users' processes, read their /proc environ, or exceed RLIMIT_NPROC.
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


def lock_down(job: dict, scratch: str, device: str) -> None:
    """Rlimits, unprivileged uid (when root) and the audit hook; irreversible for this process."""
    limits = job["limits"]
    parent = os.getppid()
    # The candidate gets memory_mb on top of the worker's own footprint (torch, CUDA context, data). CUDA
    # reserves huge virtual ranges, so there the data segment is capped instead of the address space.
    name, limit = ("VmData", resource.RLIMIT_DATA) if device.startswith("cuda") else ("VmSize", resource.RLIMIT_AS)
    memory = _status_kib(name) * 1024 + limits["memory_mb"] * 1024 * 1024
    resource.setrlimit(limit, (memory, memory))
    cpu = limits["cpu_seconds"] or int(limits["threads"] * job["timeout_s"] + 30)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    file_size = limits["file_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing
    if os.geteuid() == 0 and limits["drop_privileges"]:
        uid = job["uid_base"] + os.getpid()
        os.chown(scratch, uid, uid)
        for entry in os.listdir(scratch):
            os.chown(os.path.join(scratch, entry), uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"], limits["max_processes"]))
        drop_privileges(uid, keep_read=not _world_readable(sys.base_prefix, sys.prefix))
    # Die with the evaluator (set after the uid switch, which clears it): a killed service leaves no training behind.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    if limits["audit_hook"]:
        import torch

        package = os.path.dirname(os.path.abspath(__file__))
        roots = tuple({os.path.dirname(torch.__file__), sys.prefix, sys.base_prefix, package})
        sys.addaudithook(_make_audit_hook(scratch, roots))


def _set_stage(scratch: str, stage: Stage) -> None:
    Path(scratch, "stage").write_text(stage.name)


def _describe(exc: BaseException) -> str:
    """One-line reason, naming sandbox limits when they caused the failure."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc):
        return f"memory limit exceeded ({text})"
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS):
        return f"network access blocked ({text})"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return f"output limit exceeded ({text})"
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
        return f"process or resource limit reached ({text})"
    return text


def _load_module(code: str) -> types.ModuleType:
    module = types.ModuleType("candidate")
    module.__file__ = "<candidate>"
    exec(compile(code, "<candidate>", "exec"), module.__dict__)
    return module


def evaluate_candidate(job: dict, scratch: str, data: dict, device_name: str, metrics: dict[str, float]) -> float:
    """The candidate stages, filling `metrics`; the accuracy, or CandidateFailure."""
    import torch

    from evaluator_svc.datasets import Split
    from evaluator_svc.trainer import Batches, TrainOptions, evaluate, non_finite_parameters, seed_everything, train
    from evaluator_svc.transforms import parse_transform

    device = torch.device(device_name)
    options = TrainOptions(batch=job["batch"], epochs=job["epochs"], seed=job["seed"], bf16=job["bf16"],
                           channels_last=job["channels_last"])
    seed_everything(options.seed)
    transform = parse_transform(job["transform"], tuple(job["mean"]), tuple(job["std"]))
    train_batches = Batches(Split(*data["train"]), transform, options, device, shuffle=True)
    test_batches = Batches(Split(*data["test"]), transform, options, device, shuffle=False)

    def stage(current: Stage, fn):
        _set_stage(scratch, current)
        try:
            return fn()
        except CandidateFailure:
            raise
        except BaseException as exc:
            raise CandidateFailure(current, _describe(exc)) from exc

    x, _ = train_batches.first()
    in_shape, out_shape = tuple(x.shape), (job["num_classes"],)

    def instantiate():
        module = _load_module(job["code"])
        start = time.perf_counter()
        model = module.Net(in_shape, out_shape, dict(job["prm"]), device).to(device)
        metrics["instantiate_seconds"] = time.perf_counter() - start
        metrics["num_params"] = float(sum(p.numel() for p in model.parameters()))
        return model

    model = stage(Stage.INSTANTIATE, instantiate)

    def forward():
        model.eval()
        with torch.no_grad():
            out = model(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (in_shape[0], out_shape[0]):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CandidateFailure(Stage.FORWARD, f"output shape {shape}, expected {(in_shape[0], out_shape[0])}")

    stage(Stage.FORWARD, forward)

    def train_stage():
        metrics.update(train(model, train_batches, dict(job["prm"]), options))
        bad = non_finite_parameters(model)
        if bad:
            raise CandidateFailure(Stage.TRAIN, f"non-finite parameters after training: {', '.join(bad[:5])}")

    stage(Stage.TRAIN, train_stage)

    def evaluate_stage():
        scores = evaluate(model, test_batches, options)
        chance = 1.0 / out_shape[0]
        if not scores["accuracy"] > chance:
            raise CandidateFailure(Stage.EVALUATE, f"accuracy {scores['accuracy']:.4f} not above chance {chance:.4f}")
        return scores

    scores = stage(Stage.EVALUATE, evaluate_stage)
    metrics.update(final_loss=scores["test_loss"], eval_seconds=scores["eval_seconds"])
    return scores["accuracy"]


def main(argv: list[str]) -> None:
    job_path = Path(argv[1])
    scratch = str(job_path.parent.resolve())
    worker_pid = os.getpid()
    network = isolate_network()
    start = time.perf_counter()
    _set_stage(scratch, Stage.INSTANTIATE)
    job = json.loads(job_path.read_text())
    key = bytes.fromhex(sys.stdin.readline().strip())
    sys.stdin.close()

    import numpy as np
    import torch

    from evaluator_svc import trainer, transforms  # noqa: F401 - loaded before lock_down, used in the stages

    torch.set_num_threads(job["limits"]["threads"])
    device = job["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # create the CUDA context before the memory limit is measured and set
        if job["limits"]["gpu_memory_fraction"]:
            torch.cuda.set_per_process_memory_fraction(job["limits"]["gpu_memory_fraction"], torch.device(device))
    data = {split: (torch.from_numpy(np.load(f"{scratch}/{split}_images.npy", allow_pickle=False)),
                    torch.from_numpy(np.load(f"{scratch}/{split}_labels.npy", allow_pickle=False)))
            for split in ("train", "test")}
    for name in Path(scratch).glob("*.npy"):
        name.unlink()  # the candidate must not read the test labels
    lock_down(job, scratch, device)
    metrics = {"setup_seconds": time.perf_counter() - start, "network_namespace": float(network == "netns")}
    try:
        result = {"valid": True, "accuracy": evaluate_candidate(job, scratch, data, device, metrics)}
    except CandidateFailure as failure:
        result = {"valid": False, "accuracy": None, "stage": failure.stage.name, "reason": failure.reason}
    result["metrics"] = metrics
    payload = json.dumps(result)
    signature = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    if os.getpid() == worker_pid:  # not from a process the candidate forked
        partial = Path(scratch, f"result.{worker_pid}.tmp")
        partial.write_text(json.dumps({"payload": payload, "signature": signature}))
        partial.replace(Path(scratch, "result.json"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)  # do not wait for threads, atexit handlers or finalizers the candidate left behind


if __name__ == "__main__":
    main(sys.argv)
