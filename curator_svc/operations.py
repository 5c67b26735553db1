"""Long-running fine-tuning operations: start, get, watch, cancel, resume; state survives restarts.

Each operation is a JSON file under `<state_dir>/operations/<id>.json`, rewritten atomically on every
change. It records what its job needs (`params`), so an operation found PENDING or RUNNING at start-up (the
curator was killed or restarted under it) is started again under the same id by `resume_interrupted`; the
job continues from its newest checkpoint and reports where (`resumed_from`, `restarts`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deltanas.errors import FailedPrecondition, NotFound

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
TERMINAL = {SUCCEEDED, FAILED, CANCELLED}


class Cancelled(Exception):
    """Raised by a job that noticed its cancel event."""


@dataclass(frozen=True)
class Operation:
    id: str
    state: str
    dataset_id: str
    model: str
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    learning_rate: float = 0.0
    tokens_per_second: float = 0.0
    adapter_path: str = ""
    error: str = ""
    work_dir: str = ""
    params: dict[str, object] = field(default_factory=dict)  # what the job is rebuilt from after a restart
    resumed_from: int = 0  # the step the latest (re)start continued from
    restarts: int = 0  # starts after a curator restart


# job(op, report, cancel) -> adapter path; report(step, total, loss, lr, tokens_per_s) publishes progress.
Job = Callable[[Operation, Callable[..., None], threading.Event], str]


class OperationStore:
    """Operations by id, with a condition variable that wakes watchers on every change."""

    def __init__(self, root: Path) -> None:
        self.root = root / "operations"
        self.root.mkdir(parents=True, exist_ok=True)
        self._ops: dict[str, Operation] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._changed = threading.Condition()
        self.interrupted: list[str] = []  # ids found PENDING/RUNNING: started again by resume_interrupted
        for path in sorted(self.root.glob("*.json")):
            op = Operation(**json.loads(path.read_text()))
            if op.state not in TERMINAL:
                self.interrupted.append(op.id)
            self._ops[op.id] = op

    def _write(self, op: Operation) -> None:
        tmp = self.root / f".{op.id}.json.tmp"
        tmp.write_text(json.dumps(asdict(op)))
        os.replace(tmp, self.root / f"{op.id}.json")

    def _update(self, op_id: str, **changes: object) -> Operation:
        with self._changed:
            op = replace(self._ops[op_id], **changes)
            self._ops[op_id] = op
            self._write(op)
            self._changed.notify_all()
            return op

    def get(self, op_id: str, field: str = "id") -> Operation:
        """The operation; NotFound (message starting with `field`) if there is none."""
        try:
            return self._ops[op_id]
        except KeyError:
            raise NotFound(f"{field}: no fine-tuning operation {op_id!r}") from None

    def start(self, dataset_id: str, model: str, job: Job, work_dir: Path | None = None,
              params: dict[str, object] | None = None) -> Operation:
        """Starts `job` in a thread; `work_dir` set means a resume into that operation's checkpoints."""
        op_id = "ft-" + uuid.uuid4().hex[:12]
        op = Operation(id=op_id, state=PENDING, dataset_id=dataset_id, model=model,
                       work_dir=str(work_dir or self.root.parent / "adapters" / op_id), params=dict(params or {}))
        with self._changed:
            self._ops[op_id] = op
            self._write(op)
        self._launch(op_id, job)
        return op

    def resume_interrupted(self, make_job: Callable[[Operation], Job]) -> list[str]:
        """Starts every operation a restart interrupted again under its own id; the ids started.

        `make_job(op)` rebuilds the job from `op.params`; if it raises, the operation ends FAILED with why.
        """
        started = []
        for op_id in self.interrupted:
            op = self._ops[op_id]
            try:
                job = make_job(op)
            except Exception as exc:
                self._update(op_id, state=FAILED, error=f"interrupted by a curator restart and not resumable: "
                                                        f"{type(exc).__name__}: {exc}")
                continue
            self._update(op_id, state=PENDING, restarts=op.restarts + 1)
            log.info("operation %s: interrupted by a restart, resuming (restart %d)", op_id, op.restarts + 1)
            self._launch(op_id, job)
            started.append(op_id)
        self.interrupted = []
        return started

    def mark_resumed(self, op_id: str, step: int) -> None:
        """Records that the job continues from checkpoint `step` (shown by Get/Watch)."""
        self._update(op_id, step=step, resumed_from=step)

    def _launch(self, op_id: str, job: Job) -> None:
        self._cancel[op_id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(op_id, job), name=op_id, daemon=True)
        self._threads[op_id] = thread
        thread.start()

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Cancels running operations (they stay resumable from their last checkpoint) and waits for them."""
        for op_id, thread in list(self._threads.items()):
            if thread.is_alive():
                log.info("operation %s: cancelling for shutdown", op_id)
                self._cancel[op_id].set()
                thread.join(timeout_s)

    def _run(self, op_id: str, job: Job) -> None:
        cancel = self._cancel[op_id]

        def report(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> None:
            self._update(op_id, step=step, total_steps=total, loss=loss, learning_rate=lr,
                         tokens_per_second=tokens_per_s)

        op = self._update(op_id, state=RUNNING, error="")
        try:
            adapter = job(op, report, cancel)
            self._update(op_id, state=SUCCEEDED, adapter_path=str(adapter))
            log.info("operation %s succeeded: adapter %s", op_id, adapter)
        except Cancelled:
            self._update(op_id, state=CANCELLED, error="cancelled by request")
            log.info("operation %s cancelled", op_id)
        except Exception as exc:
            log.exception("operation %s failed", op_id)
            self._update(op_id, state=FAILED, error=f"{type(exc).__name__}: {exc}")

    def cancel(self, op_id: str) -> Operation:
        op = self.get(op_id)
        if op.state in TERMINAL:
            raise FailedPrecondition(f"id: operation {op_id} already ended ({op.state}); nothing to cancel")
        if op_id not in self._cancel:  # interrupted by a restart and not started again
            return self._update(op_id, state=CANCELLED, error="cancelled by request")
        self._cancel[op_id].set()
        return op

    def watch(self, op_id: str, is_active: Callable[[], bool], poll_s: float = 1.0) -> Iterator[Operation]:
        """Yields the operation now and after every change, until it ends or the caller goes away."""
        last = None
        while is_active():
            with self._changed:
                op = self.get(op_id)
                if op == last:
                    self._changed.wait(poll_s)
                    continue
            last = op
            yield op
            if op.state in TERMINAL:
                return
