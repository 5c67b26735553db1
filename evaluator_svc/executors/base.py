"""The executor interface: run one statically checked candidate in a sandbox somewhere, count what is busy."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from evaluator_svc.results import EvalResult
from evaluator_svc.task import TrainTask


@dataclass
class Ran:
    """An executor's answer: the result, and where it ran ("" on this server itself)."""

    result: EvalResult
    where: str = ""


class Executor(ABC):
    """Runs TrainTasks; `busy` counts those running now. Subclasses implement `_run`, `slots`, `probe`."""

    device: str  # the training device candidates get, as GetCapacity reports it
    layers: tuple[str, ...]  # the sandbox layers of the hosts that run candidates

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def run(self, task: TrainTask) -> Ran:
        """Blocks until `task` ran; raises FileNotFoundError for a missing dataset root, Unavailable when the
        executor could not run it at all."""
        with self._admission():
            with self._lock:
                self._busy += 1
            try:
                return self._run(task)
            finally:
                with self._lock:
                    self._busy -= 1

    def _admission(self) -> contextlib.AbstractContextManager:
        """Held while a task runs: a slot where the executor has a fixed number (none by default)."""
        return contextlib.nullcontext()

    @abstractmethod
    def _run(self, task: TrainTask) -> Ran: ...

    @abstractmethod
    def slots(self) -> int:
        """Candidates that can run at once now."""

    @abstractmethod
    def probe(self) -> None:
        """Raises unless candidates can run (the real device, or the cluster, answers)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most executors hold nothing)
        """Releases what the executor holds (nothing by default)."""
