"""MLflow tracking: one parent run per search, exactly one child run per candidate, journaled through outages.

    tracker = Tracker("http://mlflow:5000", "deltanas", journal_dir=Path(".deltanas/journal"))
    run_id = tracker.start_search(search_id, params, tags)      # syncs what an earlier outage journaled
    tracker.log_candidate(run_id, search_id, CandidateRecord(...))
    tracker.finish(run_id)                                      # syncs again; warns if records still wait

Child runs carry the tag `deltanas.candidate_id`; logging a candidate that already has a finished child
run is a no-op, so a resumed search never records a candidate twice. When the store cannot be reached (a
server that is down, a sqlite store error), each write goes to an append-only, fsynced JSONL journal
(`<journal_dir>/<experiment>-<store hash>.jsonl`), a WARNING names the journal and how many records wait, and
the journal is replayed in order on the next write, at the end of the search and on resume. Replays are
idempotent (the candidate tag), so a record is never logged twice; one the store rejects for good is moved
to `<journal>.rejected.jsonl` with the error. HTTP retries are lowered (MLFLOW_HTTP_REQUEST_MAX_RETRIES=2,
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1 unless set) so an outage costs seconds per call, not minutes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from client.journal import (
    AdapterOp,
    CandidateOp,
    FinishOp,
    InputsOp,
    Journal,
    Op,
    ReferenceOp,
    SummaryOp,
    TagsOp,
    UpdateOp,
)
from client.mlflow_store import PARENT_TAG, MlflowStore, source_tags
from client.records import CandidateRecord, ReferenceRecord
from client.store import MLFLOW_ENV
from deltanas.mlflowutil import experiment_id, param_values, tags_filter
from deltanas.paths import deltanas_home
from deltanas.vocabulary import CANDIDATE_TAG, REFERENCE_TAG, ROLE_TAG, SEARCH_TAG

log = logging.getLogger(__name__)

# The UI opens an experiment of this kind in its model-training view (runs, metrics), not the GenAI one (traces).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"



def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the store could not be reached (worth journaling), not that it refused the write."""
    import requests  # only this function needs them (sqlalchemy comes with mlflow, not with mlflow-skinny)
    import sqlalchemy.exc

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError, sqlalchemy.exc.OperationalError)):
        return True
    if isinstance(exc, MlflowException):
        if exc.error_code == "TEMPORARILY_UNAVAILABLE":
            return True
        message = str(exc.message)
        return message.startswith("API request to ") and ("failed with exception" in message or
                                                            "failed with timeout exception" in message)
    return False


class Tracker:
    """Parent/child runs in one experiment of an MLflow store (`sqlite:///...` or a server URI).

    The store must answer when the tracker is created and when a search starts; later outages are journaled.
    `retry_s`: while records wait, a write tries the store again at most this often (0: every write).
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None,
                 journal_dir: Path | None = None, retry_s: float = 10.0) -> None:
        for name, value in MLFLOW_ENV.items():
            os.environ.setdefault(name, value)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id(self.client, experiment, artifact_location,
                                           {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        self.store = MlflowStore(self.client, self.experiment_id)
        store = hashlib.sha1(f"{tracking_uri}|{experiment}".encode()).hexdigest()[:10]
        name = re.sub(r"[^\w.-]", "_", experiment)
        self.journal = Journal((journal_dir or deltanas_home() / "journal") / f"{name}-{store}.jsonl")
        self.retry_s = retry_s
        self._next_try = 0.0
        self._lock = threading.RLock()
        self._logged: set[str] = set()
        self._references: dict[str, ReferenceRecord] = {}
        self._tags: dict[str, dict[str, str]] = {}  # run id -> tags this tracker set

    def start_search(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Creates the search's parent run, or returns the existing one when resuming (after a journal sync)."""
        self.sync()
        existing = self.client.search_runs([self.experiment_id],
                                           tags_filter({SEARCH_TAG: search_id, ROLE_TAG: "search"}), max_results=1)
        if existing:
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            with self._lock:
                self._logged = {r.data.tags[CANDIDATE_TAG] for r in self.children(run_id)}
                self._logged |= {op.candidate_id for op in self.journal.read() if isinstance(op, CandidateOp)}
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=search_id,
                                     tags={**source_tags(), SEARCH_TAG: search_id, ROLE_TAG: "search", **tags})
        self.store.log(run.info.run_id, params, {}, {})
        return run.info.run_id

    def children(self, parent_run_id: str) -> list[Any]:
        """Finished child runs of a search, one per logged candidate."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id],
                                           tags_filter({PARENT_TAG: parent_run_id, ROLE_TAG: "candidate"}),
                                           max_results=1000, page_token=token)
            runs.extend(r for r in page if r.info.status == "FINISHED")
            token = page.token
            if not token:
                return runs

    def is_logged(self, candidate_id: str) -> bool:
        """True once the candidate is in the store or in the journal."""
        return candidate_id in self._logged

    def log_candidate(self, parent_run_id: str, search_id: str, record: CandidateRecord) -> str | None:
        """Logs one candidate as a child run; None if it was already logged or went to the journal."""
        with self._lock:
            if record.candidate_id in self._logged:
                return None
            run_id = self._write(lambda now: CandidateOp(
                now, parent_run_id, search_id, record.candidate_id, param_values(record.params), record.metrics,
                record.tags, record.artifacts, record.start_ms))
            self._logged.add(record.candidate_id)
            return run_id

    def log_reference(self, record: ReferenceRecord) -> None:
        """Keeps a same-budget reference as a run of its own (role `reference`, tag `deltanas.reference_key`): once
        per key, journaled through outages like every write."""
        with self._lock:
            if record.key in self._references:
                return
            self._write(lambda now: ReferenceOp(now, record.key, record.name, param_values(record.params),
                                                record.metrics, record.tags, record.artifacts))
            self._references[record.key] = record

    def find_reference(self, key: str) -> ReferenceRecord | None:
        """The reference kept under `key`: logged by this tracker, waiting in the journal, or in the store."""
        with self._lock:
            if key in self._references:
                return self._references[key]
            for op in self.journal.read():
                if isinstance(op, ReferenceOp) and op.key == key:
                    return self._remember(ReferenceRecord(key, op.name, op.params, op.metrics, op.tags, op.artifacts))
        runs = self.client.search_runs([self.experiment_id], tags_filter({REFERENCE_TAG: key, ROLE_TAG: "reference"}),
                                       max_results=10)
        run = next((r for r in runs if r.info.status == "FINISHED"), None)
        if run is None:
            return None
        with self._lock:
            return self._remember(ReferenceRecord(key, run.info.run_name, dict(run.data.params),
                                                  dict(run.data.metrics), dict(run.data.tags), {}))

    def _remember(self, record: ReferenceRecord) -> ReferenceRecord:
        self._references[record.key] = record
        return record

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Tags on a run (the search's parent run, say), journaled through outages."""
        self._write(lambda now: TagsOp(now, run_id, tags))
        with self._lock:
            self._tags.setdefault(run_id, {}).update(tags)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """A run's tags as the store holds them, with what this tracker set and what waits in the journal on top;
        while the store is down, only those."""
        try:
            tags = dict(self.client.get_run(run_id).data.tags)
        except Exception as exc:
            if not is_outage(exc):
                raise
            tags = {}
        for op in self.journal.read():
            if isinstance(op, TagsOp) and op.run_id == run_id:
                tags.update(op.tags)
        with self._lock:
            return {**tags, **self._tags.get(run_id, {})}

    def read_artifact(self, run_id: str, path: str) -> str:
        """A text artifact of a run (read-only)."""
        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()

    def update_candidate(self, candidate_id: str, metrics: dict[str, float],
                         params: dict[str, object] | None = None) -> None:
        """Logs extra metrics/params (e.g. of a re-training) on the candidate's existing child run.

        Raises LookupError when the store has no finished child run of that candidate.
        """
        self._write(lambda now: UpdateOp(now, candidate_id, metrics, param_values(params or {})))

    def log_summary(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, str],
                    steps: dict[int, dict[str, float]] | None = None, tags: dict[str, str] | None = None,
                    tables: list[str] = ()) -> None:
        """The search's dashboard on its parent run: `metrics` at step 0, `steps` per step (cycle), text
        artifacts (`tables`: those in MLflow's table JSON), tags. A metric point already there is not repeated."""
        self._write(lambda now: SummaryOp(now, run_id, metrics, artifacts,
                                          {str(k): v for k, v in (steps or {}).items()}, tags or {}, list(tables)))

    def log_datasets(self, run_id: str, datasets: list[dict[str, str]]) -> None:
        """Dataset lineage (the run's Datasets column): each {name, digest, source, profile, context}; MLflow keeps
        one entry per name and digest, so logging again on resume adds nothing."""
        self._write(lambda now: InputsOp(now, run_id, datasets))

    def log_adapter(self, run_id: str, name: str, step: int, path: str, metrics: dict[str, float],
                    params: dict[str, Any], dataset: dict[str, str]) -> None:
        """A fine-tuned LoRA adapter as an MLflow logged model: the output of `run_id` at `step` (the cycle), holding
        the adapter's files where `path` is a directory this process can read (else only its params), with its
        training `dataset` ({name, digest, source, profile}) as the run's input and the model's `metrics` linked to
        that dataset. Logged once per name and run: a resumed search adds nothing."""
        self._write(lambda now: AdapterOp(now, run_id, name, step, path, metrics, param_values(params), dataset))

    @contextmanager
    def system_metrics(self, run_id: str, interval_s: float = 10.0) -> Iterator[None]:
        """MLflow's system metrics (CPU, memory, disk, network, GPU where present) on `run_id` while the block
        runs, sampled every `interval_s`; a resumed search continues the same series."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                       tracking_uri=self.tracking_uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def log_figures(self, run_id: str, figures: dict[str, Any]) -> None:
        """matplotlib figures as PNG artifacts; skipped with a warning while the store is down (they are derived:
        `deltanas report` draws them again)."""
        try:
            for name, fig in figures.items():
                self.client.log_figure(run_id, fig, name)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("MLflow at %s is unreachable: the report's figures were not logged (%s); run `deltanas "
                        "report` later to draw them", self.tracking_uri, type(exc).__name__)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Ends the parent run after a last journal sync; warns if records are still waiting."""
        with self._lock:
            self._next_try = 0.0
            self._write(lambda now: FinishOp(now, run_id, status))
            if self.journal.pending():
                log.warning("MLflow at %s is still unreachable: %d record(s) wait in %s; they are synced by the "
                            "next tracking call to this store, e.g. when the search is resumed", self.tracking_uri,
                            len(self.journal.read()), self.journal.path)

    def sync(self) -> bool:
        """Replays the journal into the store now; True when nothing is left waiting."""
        if not self.journal.pending():
            return True
        with self._lock, self.journal.locked():
            return self._replay()

    def _write(self, make: Callable[[int], Op]) -> str | None:
        """Applies one write (made with the time now), or journals it (after the records already waiting, to keep
        their order)."""
        op = make(int(time.time() * 1000))
        with self._lock:
            if self.journal.pending():
                with self.journal.locked():
                    if time.monotonic() < self._next_try or not self._replay():
                        return self._journal(op, "earlier records still wait")
            try:
                return op.apply(self.store)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._next_try = time.monotonic() + self.retry_s
                with self.journal.locked():
                    return self._journal(op, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")

    def _journal(self, op: Op, why: str) -> None:
        waiting = self.journal.append(op)
        log.warning("MLflow at %s is unreachable (%s): %s journaled to %s (%d record(s) waiting; synced when the "
                    "store answers again)", self.tracking_uri, why, op.subject(), self.journal.path, waiting)

    def _replay(self) -> bool:
        """Applies the waiting records in order (the caller holds both locks); stops at the first outage."""
        ops = self.journal.read()
        for n, op in enumerate(ops):
            try:
                op.apply(self.store)
            except Exception as exc:
                if is_outage(exc):
                    self.journal.replace(ops[n:])
                    self._next_try = time.monotonic() + self.retry_s
                    return False
                log.error("journal %s: the store refused a %s record (%s); moved to %s", self.journal.path, op.kind,
                          exc, self.journal.rejected)
                self.journal.reject(op, exc)
        if ops:
            self.journal.replace([])
            log.info("synced %d journaled record(s) from %s to MLflow at %s", len(ops), self.journal.path,
                     self.tracking_uri)
        return True
