"""Real services as child processes, for tests and benchmarks: an evaluator (`python -m evaluator_svc`) and a
local Ray cluster (`ray start --head`), each stopped with everything it started.

    with RayCluster(cpus=2) as cluster, EvaluatorProcess(env=cluster.evaluator_env()) as evaluator:
        ...  # evaluator.address
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

CHECKOUT = Path(__file__).resolve().parents[2]  # where `python -m evaluator_svc` imports this same code from


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when this returns)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(condition: Callable[[], bool], timeout_s: float = 90.0) -> bool:
    """Waits until `condition()` holds (True; polled, a generous bound, never a measurement); AssertionError after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
    return True


def wait_for_line(stream, pattern: str, timeout_s: float) -> tuple[re.Match | None, list[str]]:
    """Reads `stream` until a line matches `pattern` (then drains the rest in a daemon thread) or `timeout_s`
    passes or it ends; returns the match (None if none) and the lines seen."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            threading.Thread(target=lambda: [None for _ in iter(lines.get, None)], daemon=True).start()
            return match, seen
    return None, seen


class EvaluatorProcess:
    """`python -m evaluator_svc` on 127.0.0.1; port 0 picks a free port, a restart binds the same one again."""

    def __init__(self, port: int = 0, slots: int = 1, threads: int = 1, ready_timeout_s: float = 180.0,
                 env: dict[str, str] | None = None) -> None:
        self.port = port
        self.env = {**os.environ, "DELTANAS_EVALUATOR_SLOTS": str(slots),
                    "DELTANAS_EVALUATOR_SANDBOX__THREADS": str(threads), "DELTANAS_EVALUATOR_GRACE_S": "5",
                    **(env or {})}
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EvaluatorProcess:
        """Starts the process and waits for its `ready on 127.0.0.1:PORT` log line."""
        self.proc = subprocess.Popen([sys.executable, "-m", "evaluator_svc"], cwd=CHECKOUT, stderr=subprocess.PIPE,
                                     text=True, env={**self.env, "DELTANAS_EVALUATOR_PORT": str(self.port)})
        match, seen = wait_for_line(self.proc.stderr, r"ready on 127\.0\.0\.1:(\d+)", self.ready_timeout_s)
        if match:
            self.port = int(match.group(1))
            return self
        self.kill()
        raise RuntimeError(f"evaluator on port {self.port} did not become ready:\n{''.join(seen[-20:])}")

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-call without draining."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def kill_mid_candidate(self) -> bool:
        """SIGKILL only while a candidate runs; returns whether it did.

        The server is frozen (SIGSTOP) first. A candidate process among its children means the reply has not
        left yet (the server answers only after reaping it), so the kill lands mid-call; otherwise it resumes.
        """
        if not self.proc or self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGSTOP)
        try:
            evaluating = bool(psutil.Process(self.proc.pid).children())
        except psutil.NoSuchProcess:
            evaluating = False
        if evaluating:
            self.kill()
        else:
            self.proc.send_signal(signal.SIGCONT)
        return evaluating

    def __enter__(self) -> EvaluatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class RayCluster:
    """A real local Ray cluster: `ray start --head --block` on 127.0.0.1 with `cpus` CPUs, its own temp dir and
    auth token (Ray's token authentication, as on a real cluster); stop() ends every process it started."""

    def __init__(self, cpus: int, ready_timeout_s: float = 120.0) -> None:
        self.cpus = cpus
        self.ready_timeout_s = ready_timeout_s
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.port = 0
        self.temp_dir = ""
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def evaluator_env(self, cpus_per_candidate: float = 1.0) -> dict[str, str]:
        """Environment of an evaluator that runs its candidates on this cluster."""
        return {**self.auth, "DELTANAS_EVALUATOR_EXECUTOR": "ray", "DELTANAS_EVALUATOR_RAY__ADDRESS": self.address,
                "DELTANAS_EVALUATOR_RAY__CPUS": str(cpus_per_candidate)}

    def start(self) -> RayCluster:
        self.port = free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay short
        ray = Path(sys.executable).with_name("ray")
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--num-cpus", str(self.cpus), "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
             "--temp-dir", self.temp_dir], env={**os.environ, **self.auth}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        match, seen = wait_for_line(self.proc.stdout, r"Ray runtime started", self.ready_timeout_s)
        if match:
            return self
        self.stop()
        raise RuntimeError(f"ray head did not start:\n{''.join(seen[-20:])}")

    def worker_pids(self, function: str) -> list[int]:
        """Processes of this machine whose title says they run Ray task `function` now (`ray::function`)."""
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except (OSError, ValueError):
                continue
            if entry.name.isdigit() and title == f"ray::{function}".encode():
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
