"""The executor interface: run one statically checked candidate in a sandbox somewhere, count what is busy."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from deltanas.errors import Cancelled
from evaluator_svc.results import EvalResult
from evaluator_svc.task import TrainTask


@dataclass
class ExecutorResult:
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

    def run(self, task: TrainTask, cancel: threading.Event) -> ExecutorResult:
        """Blocks until `task` ran; raises FileNotFoundError for a missing dataset root, Unavailable when the
        executor could not run it at all, Cancelled when `cancel` is set first (waiting for a slot: it never
        starts; running: it is stopped)."""
        if not self._take_slot(cancel):
            raise Cancelled(f"candidate {task.candidate_id}: the caller cancelled while it waited for a slot")
        try:
            if cancel.is_set():
                raise Cancelled(f"candidate {task.candidate_id}: the caller cancelled before it started")
            with self._lock:
                self._busy += 1
            try:
                return self._run(task, cancel)
            finally:
                with self._lock:
                    self._busy -= 1
        finally:
            self._give_slot()

    def _take_slot(self, cancel: threading.Event) -> bool:
        """Waits for a slot where the executor has a fixed number (none by default); False when `cancel` was
        set first."""
        return True

    def _give_slot(self) -> None:  # noqa: B027 (optional hook: no slots by default)
        """Returns the slot `_take_slot` gave."""

    @abstractmethod
    def _run(self, task: TrainTask, cancel: threading.Event) -> ExecutorResult: ...

    @abstractmethod
    def slots(self) -> int:
        """Candidates that can run at once now."""

    @abstractmethod
    def probe(self) -> None:
        """Raises unless candidates can run (the real device, or the cluster, answers)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most executors hold nothing)
        """Releases what the executor holds (nothing by default)."""

