"""Sandboxed worker: ``python -m evaluator_svc.worker <scratch>/job.json <result fd> <stage fd>``, in its writable
scratch dir (the cwd; the job's inputs are beside it, read-only under bubblewrap).

Trusted phase: leave the network (weak mode only; bubblewrap did it otherwise) before any thread exists
(namespaces are per thread), import torch, load the training split and the test *images* (the test labels
never reach this process). Then `lock_down`, and only then the candidate's stages
(`evaluator_svc.candidate`). One `WorkerReport` frame goes down the result pipe; the parent scores it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from evaluator_svc.job import Job, data_file
from evaluator_svc.lockdown import isolate_network, lock_down
from evaluator_svc.results import Stage


def main(argv: list[str]) -> None:
    job_path, result_fd, stage_fd = Path(argv[1]), int(argv[2]), int(argv[3])
    inputs, work = str(job_path.parent.resolve()), os.getcwd()
    worker_pid = os.getpid()
    start = time.perf_counter()
    job = Job.from_json(job_path.read_text())
    if not job.kernel_sandbox:
        isolate_network()

    import numpy as np
    import torch

    from evaluator_svc.candidate import CandidateFailure, evaluate_candidate, set_stage
    from evaluator_svc.datasets import Split
    from evaluator_svc.scoring import WorkerReport

    set_stage(stage_fd, Stage.INSTANTIATE)
    torch.set_num_threads(job.limits.threads)
    device = job.device  # resolved by the host (evaluator_svc.task); the worker imports no deltanas code
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # create the CUDA context before the memory limit is measured and set
        if job.limits.gpu_memory_fraction:
            torch.cuda.set_per_process_memory_fraction(job.limits.gpu_memory_fraction, torch.device(device))

    def load(name: str) -> torch.Tensor:
        return torch.from_numpy(np.load(os.path.join(inputs, data_file(name)), allow_pickle=False))

    train_split, test_images = Split(load("train_images"), load("train_labels")), load("test_images")
    lock_down(job, work, device)
    metrics = {"setup_seconds": time.perf_counter() - start}
    try:
        predictions = evaluate_candidate(job, stage_fd, train_split, test_images, device, metrics)
        report = WorkerReport(None, metrics, predictions)
    except CandidateFailure as failure:
        report = WorkerReport((failure.stage, failure.reason), metrics)
    if os.getpid() == worker_pid:  # not from a process the candidate forked (weak mode)
        with contextlib.suppress(OSError), os.fdopen(result_fd, "wb") as pipe:
            pipe.write(report.encode())
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)  # do not wait for threads, atexit handlers or finalizers the candidate left behind


if __name__ == "__main__":
    main(sys.argv)
