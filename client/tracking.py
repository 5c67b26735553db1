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

import fcntl
import functools
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from client.records import CandidateRecord, ReferenceRecord
from deltanas.adapters import adapter_files
from deltanas.paths import deltanas_home
from deltanas.vocabulary import CANDIDATE_TAG, REFERENCE_TAG, ROLE_TAG, SEARCH_TAG

log = logging.getLogger("deltanas.tracking")

PARENT_TAG = "mlflow.parentRunId"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"  # how the UI knows an artifact is a table
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

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # only a crash mid-append leaves a torn line
                log.warning("journal %s: skipping torn line %d", self.path, n)
        return records

    def append(self, record: dict[str, Any]) -> int:
        """Appends one record durably; returns how many records wait."""
        new = not self.path.exists()
        with open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
            os.fsync(out.fileno())
        if new:
            self._sync_dir()
        return len(self.read())

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Keeps only `records` (atomically); removes the journal when none are left."""
        if not records:
            self.path.unlink(missing_ok=True)
        else:
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as out:
                out.writelines(json.dumps(r) + "\n" for r in records)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        self._sync_dir()

    def reject(self, record: dict[str, Any], error: BaseException) -> None:
        with open(self.rejected, "a") as out:
            out.write(json.dumps({**record, "error": f"{type(error).__name__}: {error}"}) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def _sync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Tracker:
    """Parent/child runs in one experiment of an MLflow store (`sqlite:///...` or a server URI).

    The store must answer when the tracker is created and when a search starts; later outages are journaled.
    `retry_s`: while records wait, a write tries the store again at most this often (0: every write).
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None,
                 journal_dir: Path | None = None, retry_s: float = 10.0) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}))
        if found and found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
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
        existing = self.client.search_runs([self.experiment_id], f"tags.`{SEARCH_TAG}` = '{search_id}' "
                                           f"and tags.`{ROLE_TAG}` = 'search'", max_results=1)
        if existing:
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            with self._lock:
                self._logged = {r.data.tags[CANDIDATE_TAG] for r in self.children(run_id)}
                self._logged |= {r["candidate_id"] for r in self.journal.read() if r["op"] == "candidate"}
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=search_id,
                                     tags={**source_tags(), SEARCH_TAG: search_id, ROLE_TAG: "search", **tags})
        self._log(run.info.run_id, params, {}, {})
        return run.info.run_id

    def children(self, parent_run_id: str) -> list[Any]:
        """Finished child runs of a search, one per logged candidate."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}' and "
                                           f"tags.`{ROLE_TAG}` = 'candidate'", max_results=1000, page_token=token)
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
            run_id = self._write({"op": "candidate", "parent_run_id": parent_run_id, "search_id": search_id,
                                  "candidate_id": record.candidate_id, "params": _params(record.params),
                                  "metrics": record.metrics, "tags": record.tags, "artifacts": record.artifacts,
                                  "start_ms": record.start_ms})
            self._logged.add(record.candidate_id)
            return run_id

    def log_reference(self, record: ReferenceRecord) -> None:
        """Keeps a same-budget reference as a run of its own (role `reference`, tag `deltanas.reference_key`): once
        per key, journaled through outages like every write."""
        with self._lock:
            if record.key in self._references:
                return
            self._write({"op": "reference", "key": record.key, "name": record.name, "params": _params(record.params),
                         "metrics": record.metrics, "tags": record.tags, "artifacts": record.artifacts})
            self._references[record.key] = record

    def find_reference(self, key: str) -> ReferenceRecord | None:
        """The reference kept under `key`: logged by this tracker, waiting in the journal, or in the store."""
        with self._lock:
            if key in self._references:
                return self._references[key]
            for op in self.journal.read():
                if op["op"] == "reference" and op["key"] == key:
                    return self._remember(ReferenceRecord(key, op["name"], op["params"], op["metrics"], op["tags"],
                                                          op["artifacts"]))
        runs = self.client.search_runs([self.experiment_id], f"tags.`{REFERENCE_TAG}` = '{key}' and "
                                       f"tags.`{ROLE_TAG}` = 'reference'", max_results=10)
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
        self._write({"op": "tags", "run_id": run_id, "tags": tags})
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
            if op["op"] == "tags" and op["run_id"] == run_id:
                tags.update(op["tags"])
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
        self._write({"op": "update", "candidate_id": candidate_id, "metrics": metrics,
                     "params": _params(params or {})})

    def log_summary(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, str],
                    steps: dict[int, dict[str, float]] | None = None, tags: dict[str, str] | None = None,
                    tables: list[str] = ()) -> None:
        """The search's dashboard on its parent run: `metrics` at step 0, `steps` per step (cycle), text
        artifacts (`tables`: those in MLflow's table JSON), tags. A metric point already there is not repeated."""
        self._write({"op": "summary", "run_id": run_id, "metrics": metrics, "artifacts": artifacts,
                     "steps": {str(k): v for k, v in (steps or {}).items()}, "tags": tags or {},
                     "tables": list(tables)})

    def log_datasets(self, run_id: str, datasets: list[dict[str, str]]) -> None:
        """Dataset lineage (the run's Datasets column): each {name, digest, source, profile, context}; MLflow keeps
        one entry per name and digest, so logging again on resume adds nothing."""
        self._write({"op": "inputs", "run_id": run_id, "datasets": datasets})

    def log_adapter(self, run_id: str, name: str, step: int, path: str, metrics: dict[str, float],
                    params: dict[str, Any], dataset: dict[str, str]) -> None:
        """A fine-tuned LoRA adapter as an MLflow logged model: the output of `run_id` at `step` (the cycle), holding
        the adapter's files where `path` is a directory this process can read (else only its params), with its
        training `dataset` ({name, digest, source, profile}) as the run's input and the model's `metrics` linked to
        that dataset. Logged once per name and run: a resumed search adds nothing."""
        self._write({"op": "adapter", "run_id": run_id, "name": name, "step": step, "path": path,
                     "metrics": metrics, "params": _params(params), "dataset": dataset})

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
            self._write({"op": "finish", "run_id": run_id, "status": status})
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

    def _write(self, op: dict[str, Any]) -> str | None:
        """Applies one write, or journals it (after the records already waiting, to keep their order)."""
        op["time_ms"] = int(time.time() * 1000)
        with self._lock:
            if self.journal.pending():
                with self.journal.locked():
                    if time.monotonic() < self._next_try or not self._replay():
                        return self._journal(op, "earlier records still wait")
            try:
                return self._apply(op)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._next_try = time.monotonic() + self.retry_s
                with self.journal.locked():
                    return self._journal(op, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")

    def _journal(self, op: dict[str, Any], why: str) -> None:
        waiting = self.journal.append(op)
        subject = (f"candidate {op['candidate_id']}" if "candidate_id" in op else f"reference {op['key']}"
                   if op["op"] == "reference" else f"{op['op']} of run {op['run_id']}")
        log.warning("MLflow at %s is unreachable (%s): %s journaled to %s (%d record(s) waiting; synced when the "
                    "store answers again)", self.tracking_uri, why, subject, self.journal.path, waiting)

    def _replay(self) -> bool:
        """Applies the waiting records in order (the caller holds both locks); stops at the first outage."""
        records = self.journal.read()
        for n, record in enumerate(records):
            try:
                self._apply(record)
            except Exception as exc:
                if is_outage(exc):
                    self.journal.replace(records[n:])
                    self._next_try = time.monotonic() + self.retry_s
                    return False
                log.error("journal %s: the store refused a %s record (%s); moved to %s", self.journal.path,
                          record["op"], exc, self.journal.rejected)
                self.journal.reject(record, exc)
        if records:
            self.journal.replace([])
            log.info("synced %d journaled record(s) from %s to MLflow at %s", len(records), self.journal.path,
                     self.tracking_uri)
        return True

    def _apply(self, op: dict[str, Any]) -> str | None:
        kind, stamp = op["op"], op["time_ms"]
        if kind == "candidate":
            return self._create_child(op)
        if kind == "update":
            self._log(self._child_run(op["candidate_id"]), op["params"], op["metrics"], {}, stamp)
        elif kind == "summary":
            self._log_dashboard(op, stamp)
        elif kind == "inputs":
            self.client.log_inputs(op["run_id"], [_dataset_input(d) for d in op["datasets"]])
        elif kind == "adapter":
            self._log_adapter(op, stamp)
        elif kind == "reference":
            self._create_reference(op)
        elif kind == "tags":
            self._log(op["run_id"], {}, {}, op["tags"], stamp)
        else:
            self.client.set_terminated(op["run_id"], op["status"], end_time=stamp)
        return None

    def _create_child(self, op: dict[str, Any]) -> str:
        cid = op["candidate_id"]
        runs = self.client.search_runs([self.experiment_id], f"tags.`{CANDIDATE_TAG}` = '{cid}'", max_results=10)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:  # already in the store (a replay after a partial sync): idempotent
            return done[0].info.run_id
        for run in runs:  # a crash between create_run and set_terminated left an unfinished run: redo it
            self.client.delete_run(run.info.run_id)
        tags = {**source_tags(), PARENT_TAG: op["parent_run_id"], CANDIDATE_TAG: cid, SEARCH_TAG: op["search_id"],
                ROLE_TAG: "candidate", **op["tags"]}
        run = self.client.create_run(self.experiment_id, run_name=cid, start_time=op.get("start_ms") or op["time_ms"],
                                     tags=tags)
        run_id = run.info.run_id
        self._log(run_id, op["params"], op["metrics"], {}, op["time_ms"])
        for name, text in op["artifacts"].items():
            if text:
                self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, "FINISHED", end_time=op["time_ms"])  # when the evaluation ended
        return run_id

    def _create_reference(self, op: dict[str, Any]) -> None:
        key = op["key"]
        runs = self.client.search_runs([self.experiment_id], f"tags.`{REFERENCE_TAG}` = '{key}' and "
                                       f"tags.`{ROLE_TAG}` = 'reference'", max_results=10)
        if any(r.info.status == "FINISHED" for r in runs):
            return
        for run in runs:  # a crash mid-write left an unfinished one: redo it
            self.client.delete_run(run.info.run_id)
        run = self.client.create_run(self.experiment_id, run_name=op["name"], start_time=op["time_ms"],
                                     tags={**source_tags(), ROLE_TAG: "reference", REFERENCE_TAG: key, **op["tags"]})
        self._log(run.info.run_id, op["params"], op["metrics"], {}, op["time_ms"])
        for name, text in op["artifacts"].items():
            self.client.log_text(run.info.run_id, text, name)
        self.client.set_terminated(run.info.run_id, "FINISHED", end_time=op["time_ms"])

    def _log_adapter(self, op: dict[str, Any], stamp: int) -> None:
        run_id, name, step, data = op["run_id"], op["name"], op["step"], op["dataset"]
        models = [m for m in self.client.search_logged_models([self.experiment_id], f"name = '{name}'")
                  if m.source_run_id == run_id]
        model = next((m for m in models if str(m.status) == "READY"), None)
        if model is None:  # none yet, or a crash left one half-made (it stays PENDING, and is not linked)
            model = self.client.create_logged_model(self.experiment_id, name, run_id, params=op["params"],
                                                    tags={ROLE_TAG: "adapter"}, model_type="peft-lora")
            files = adapter_files(op["path"])
            if files:
                with tempfile.TemporaryDirectory() as tmp:
                    for f in files:
                        shutil.copy2(f, tmp)
                    self.client.log_model_artifacts(model.model_id, tmp)
            self.client.finalize_logged_model(model.model_id, "READY")
        self.client.log_inputs(run_id, [_dataset_input({**data, "context": "train"})])
        if model.model_id not in {o.model_id for o in self.client.get_run(run_id).outputs.model_outputs}:
            self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
            self.client.log_batch(run_id, metrics=[
                Metric(k, float(v), stamp, step, model_id=model.model_id, dataset_name=data["name"],
                       dataset_digest=data["digest"]) for k, v in op["metrics"].items()])

    def _child_run(self, candidate_id: str) -> str:
        runs = self.client.search_runs([self.experiment_id], f"tags.`{CANDIDATE_TAG}` = '{candidate_id}'",
                                       max_results=10)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if not finished:
            raise LookupError(f"candidate_id: no finished child run for {candidate_id!r}")
        return finished[0].info.run_id

    def _log_dashboard(self, op: dict[str, Any], stamp: int) -> None:
        """A summary op: only metric points that differ from what the run holds, so a re-run adds nothing."""
        run_id = op["run_id"]
        run = self.client.get_run(run_id)
        latest = run.data.metrics
        points = [Metric(k, float(v), stamp, 0) for k, v in op["metrics"].items() if latest.get(k) != float(v)]
        history: dict[str, set[tuple[int, float]]] = {}
        for step, values in op.get("steps", {}).items():
            for key, value in values.items():
                if key not in history:
                    history[key] = ({(m.step, m.value) for m in self.client.get_metric_history(run_id, key)}
                                    if key in latest else set())
                if (int(step), float(value)) not in history[key]:
                    points.append(Metric(key, float(value), stamp, int(step)))
        tags = dict(op.get("tags", {}))
        if op.get("tables"):
            known = json.loads(run.data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
            known += [t for t in ({"path": path, "type": "table"} for path in op["tables"]) if t not in known]
            tags[LOGGED_ARTIFACTS_TAG] = json.dumps(known)
        tags = {k: v for k, v in tags.items() if run.data.tags.get(k) != v}
        for i in range(0, len(points), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(run_id, metrics=points[i:i + 1000])
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        for name, text in op["artifacts"].items():
            self.client.log_text(run_id, text, name)

    def _log(self, run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
             time_ms: int | None = None) -> None:
        stamp = time_ms or int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, v) for k, v in _params(params).items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )


def _dataset_input(d: dict[str, str]) -> DatasetInput:
    """A dataset of the run's lineage: {name, digest, source, profile, context (train, evaluation)}."""
    return DatasetInput(Dataset(d["name"], d["digest"], "deltanas", d["source"], profile=d["profile"]),
                        [InputTag("mlflow.data.context", d["context"])])


def _params(params: dict[str, Any]) -> dict[str, str]:
    """MLflow params as stored: strings of at most 6000 characters, lists comma-joined."""
    return {k: (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v))[:6000] for k, v in params.items()}


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's source tags for runs this process creates: program, user, and the git commit of this checkout."""
    tags = {"mlflow.source.name": "deltanas", "mlflow.source.type": "LOCAL", "mlflow.user": getpass.getuser()}
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return tags
    if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", done.stdout.strip()):
        tags["mlflow.source.git.commit"] = done.stdout.strip()
    return tags
