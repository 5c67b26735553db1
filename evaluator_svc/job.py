"""What the service hands a sandboxed worker: the job and its limits, as job.json in the scratch dir.

    (scratch / JOB_FILE).write_text(job.to_json()); job = Job.from_json(text)

Standard library only: the worker reads it before it imports torch (weak mode leaves the network first).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

UID_BASE = 200_000
JOB_FILE, STAGE_FILE, WORK_DIR = "job.json", "stage", "work"
DATA_FILES = ("train_images", "train_labels", "test_images")  # never the test labels


def data_file(name: str) -> str:
    """File name in the scratch dir of one of DATA_FILES."""
    return f"{name}.npy"


@dataclass
class SandboxLimits:
    """Resource limits and layers of one sandboxed worker (the evaluator config's [sandbox] table). Declared with
    `field`, not deltanas.config.option: the sandboxed worker reads this module and sees no deltanas."""

    memory_mb: int = field(default=4096, metadata={
        "help": "memory the candidate may add to the worker's own footprint after setup (torch and data "
                "loaded): RLIMIT_AS on CPU, RLIMIT_DATA on CUDA; with a cgroup also part of its memory limit"})
    runtime_mb: int = field(default=2048, metadata={
        "help": "memory the worker's interpreter, torch and data may take before the candidate runs: a cgroup's "
                "memory limit is runtime_mb + memory_mb, and counts the worker's tmpfs and shared memory too"})
    threads: int = field(default=0, metadata={
        "help": "OMP/MKL/torch intra-op threads of the worker (0: the executor's share: cores / slots locally, the "
                "task's CPUs on Ray; see share)"})
    gpu_memory_fraction: float = field(default=0.0, metadata={
        "help": "torch.cuda.set_per_process_memory_fraction of the worker when CUDA is used (0: the executor's share: "
                "1 / slots locally, the task's GPUs on Ray; no cap where that is 0)"})
    python_guards: bool = field(default=True, metadata={
        "help": "the static SYNTAX/CONTRACT/SAFETY checks before a candidate runs and the in-worker audit hook; off "
                "only to test that the kernel sandbox holds on its own"})
    cpu_seconds: int | None = field(default=None, metadata={
        "help": "CPU-time limit (RLIMIT_CPU); default: threads x wall timeout + 30"})
    file_mb: int = field(default=64, metadata={
        "help": "largest file the worker may write, stdout/stderr included (RLIMIT_FSIZE)"})
    scratch_mb: int = field(default=256, metadata={
        "help": "size of the worker's writable scratch dir (its cwd, HOME and TMPDIR): a tmpfs under bubblewrap; "
                "weak mode: a directory on the host disk, with file_mb per file only"})
    tmp_mb: int = field(default=16, metadata={"help": "size of each of the sandbox's private /tmp and /dev/shm"})
    max_processes: int = field(default=64, metadata={
        "help": "processes + threads of one worker: the pids.max of its cgroup; without one RLIMIT_NPROC, which "
                "the kernel enforces unless the worker's uid maps to root (a root service without cgroups: no cap "
                "beyond the memory limit on thread stacks; sandbox_layers then lacks pids-cap)"})
    open_files: int = field(default=1024, metadata={"help": "file descriptors of the worker (RLIMIT_NOFILE)"})
    cgroup: str = field(default="auto", metadata={
        "help": "per-candidate cgroup for pids and memory: auto (cgroup v2 with delegated controllers, else v1, "
                "else none), v2, v1 or none"})
    drop_privileges: bool = field(default=True, metadata={
        "help": "weak mode: when started as root, run the candidate under a fresh unprivileged uid"})
    kernel_sandbox: bool = field(default=True, metadata={
        "help": "run the worker under bubblewrap (+ seccomp) when the host provides it; False: the weak "
                "mode, a plain subprocess that locks itself down (needs allow_weak_sandbox in the service)"})
    scratch_root: str | None = field(default=None, metadata={"help": "parent of per-job scratch dirs"})

    def share(self, threads: int, gpu_memory_fraction: float) -> SandboxLimits:
        """These limits with an executor's share of the host where they leave it to the executor (0)."""
        return replace(self, threads=self.threads or threads,
                       gpu_memory_fraction=self.gpu_memory_fraction or gpu_memory_fraction)


@dataclass
class Job:
    """What the worker needs besides the data files."""

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
    kernel_sandbox: bool = False  # set by the launcher: the worker runs under bubblewrap

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        raw.update(limits=SandboxLimits(**raw["limits"]), mean=tuple(raw["mean"]), std=tuple(raw["std"]))
        return cls(**raw)
