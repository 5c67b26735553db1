"""The tracking journal: writes the MLflow store did not take, each a typed operation that serializes itself and
applies itself to the store once it answers again.

    op = CandidateOp(parent_run_id, search_id, candidate_id, params, metrics, tags, artifacts, start_ms, time_ms)
    journal.append(op)                  # one fsynced JSONL line: {"op": "candidate", ...}
    for op in journal.read(): op.apply(store)      # store: client.mlflow_store.MlflowStore

The JSON of an operation is its fields plus `op` (its kind), so a journal written before these classes existed
replays as it is.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from client.mlflow_store import MlflowStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Op:
    """One write of the tracker; `time_ms` is when it was made (the time its metrics and run carry)."""

    kind: ClassVar[str] = ""
    time_ms: int

    def apply(self, store: MlflowStore) -> str | None:
        """Writes it; the run id where the write creates a run."""
        raise NotImplementedError

    def subject(self) -> str:
        """What it is about, for a log line."""
        return f"{self.kind} of run {getattr(self, 'run_id', '?')}"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.kind, **asdict(self)}


@dataclass(frozen=True)
class CandidateOp(Op):
    kind: ClassVar[str] = "candidate"
    parent_run_id: str = ""
    search_id: str = ""
    candidate_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    start_ms: int | None = None  # when its generation started: the run's start

    def apply(self, store: MlflowStore) -> str:
        return store.create_child(self)

    def subject(self) -> str:
        return f"candidate {self.candidate_id}"


@dataclass(frozen=True)
class UpdateOp(Op):
    kind: ClassVar[str] = "update"
    candidate_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def apply(self, store: MlflowStore) -> None:
        store.log(store.child_run(self.candidate_id), self.params, self.metrics, {}, self.time_ms)

    def subject(self) -> str:
        return f"update of candidate {self.candidate_id}"


@dataclass(frozen=True)
class SummaryOp(Op):
    kind: ClassVar[str] = "summary"
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # step (str) -> metrics
    tags: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    def apply(self, store: MlflowStore) -> None:
        store.log_dashboard(self)


@dataclass(frozen=True)
class InputsOp(Op):
    kind: ClassVar[str] = "inputs"
    run_id: str = ""
    datasets: list[dict[str, str]] = field(default_factory=list)

    def apply(self, store: MlflowStore) -> None:
        store.log_inputs(self.run_id, self.datasets)


@dataclass(frozen=True)
class AdapterOp(Op):
    kind: ClassVar[str] = "adapter"
    run_id: str = ""
    name: str = ""
    step: int = 0
    path: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, str] = field(default_factory=dict)

    def apply(self, store: MlflowStore) -> None:
        store.log_adapter(self)


@dataclass(frozen=True)
class ReferenceOp(Op):
    kind: ClassVar[str] = "reference"
    key: str = ""
    name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    def apply(self, store: MlflowStore) -> None:
        store.create_reference(self)

    def subject(self) -> str:
        return f"reference {self.key}"


@dataclass(frozen=True)
class TagsOp(Op):
    kind: ClassVar[str] = "tags"
    run_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def apply(self, store: MlflowStore) -> None:
        store.log(self.run_id, {}, {}, self.tags, self.time_ms)


@dataclass(frozen=True)
class FinishOp(Op):
    kind: ClassVar[str] = "finish"
    run_id: str = ""
    status: str = "FINISHED"

    def apply(self, store: MlflowStore) -> None:
        store.terminate(self.run_id, self.status, self.time_ms)


OPS: dict[str, type[Op]] = {cls.kind: cls for cls in (CandidateOp, UpdateOp, SummaryOp, InputsOp, AdapterOp,
                                                        ReferenceOp, TagsOp, FinishOp)}


def op_from_json(raw: dict[str, Any]) -> Op:
    """The operation a journal line holds (unknown keys of a later version are left out)."""
    cls = OPS[raw["op"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


class Journal:
    """An append-only JSONL file of tracking writes the store did not take; each record is fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected = path.with_suffix(".rejected.jsonl")
        self._lock_file = path.with_suffix(".lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Excludes other processes that journal to the same store (a search and a re-training, say)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def pending(self) -> bool:
        return self.path.exists()

    def read(self) -> list[Op]:
        if not self.path.exists():
            return []
        records = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                records.append(op_from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError):  # a crash mid-append leaves a torn line
                log.warning("journal %s: skipping unreadable line %d", self.path, n)
        return records

    def append(self, op: Op) -> int:
        """Appends one operation durably; returns how many wait."""
        new = not self.path.exists()
        with open(self.path, "a") as out:
            out.write(json.dumps(op.to_json()) + "\n")
            out.flush()
            os.fsync(out.fileno())
        if new:
            self._sync_dir()
        return len(self.read())

    def replace(self, ops: list[Op]) -> None:
        """Keeps only `ops` (atomically); removes the journal when none are left."""
        if not ops:
            self.path.unlink(missing_ok=True)
        else:
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as out:
                out.writelines(json.dumps(op.to_json()) + "\n" for op in ops)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        self._sync_dir()

    def reject(self, op: Op, error: BaseException) -> None:
        with open(self.rejected, "a") as out:
            out.write(json.dumps({**op.to_json(), "error": f"{type(error).__name__}: {error}"}) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def _sync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
