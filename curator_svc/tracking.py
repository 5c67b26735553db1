"""MLflow records of the curator's work: one run per built dataset, one per fine-tuning operation.

Runs go to the experiment `deltanas-curator` of the tracking URI (the curator config's `tracking_uri`, else
$DELTANAS_CURATOR_TRACKING_URI, else $MLFLOW_TRACKING_URI; none of them: no tracking):

- dataset runs (tag deltanas.role=dataset, deltanas.dataset_id, deltanas.mode): the filter settings and source
  datasets as params, the count after each filter as metrics, manifest.json + train.jsonl + eval.jsonl as
  artifacts under `dataset/`. A dataset id is its content hash, so each dataset is logged once.
- fine-tuning runs (deltanas.role=finetune, deltanas.operation_id, deltanas.dataset_id, deltanas.base_model): the
  training config as params, loss / learning_rate / tokens_per_second per step, the final adapter directory
  under `adapter/`; the run ends FINISHED, FAILED or KILLED (cancelled).

Everything is sent from one background thread per tracking URI, so a slow or unreachable MLflow never delays
or fails a call: the first error of a run is logged as a warning and the rest of that run is skipped.

    tracker = open_tracker(config); tracker.log_dataset(...); tracker.flush()
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from curator_svc.operations import Cancelled
from deltanas.adapters import adapter_files
from deltanas.mlflowutil import artifact_location, experiment_id, finished_run, param_values
from deltanas.vocabulary import ROLE_TAG, TAG_PREFIX

if TYPE_CHECKING:
    from curator_svc.config import CuratorConfig

log = logging.getLogger(__name__)

EXPERIMENT = "deltanas-curator"
DATASET_TAG = f"{TAG_PREFIX}dataset_id"
MODE_TAG = f"{TAG_PREFIX}mode"
OPERATION_TAG = f"{TAG_PREFIX}operation_id"
BASE_MODEL_TAG = f"{TAG_PREFIX}base_model"
URI_ENV = "MLFLOW_TRACKING_URI"
_TRACKERS: dict[str, CuratorTracker] = {}
_TRACKERS_LOCK = threading.Lock()


def tracking_uri(config: CuratorConfig | None) -> str:
    """The configured tracking URI, else $MLFLOW_TRACKING_URI, or '' when tracking is off."""
    return (config.tracking_uri if config else "") or os.environ.get(URI_ENV, "")


def open_tracker(config: CuratorConfig | None) -> CuratorTracker:
    """The (shared) tracker of the configured URI; a disabled one when tracking is off or MLflow is missing."""
    uri = tracking_uri(config)
    if uri and find_spec("mlflow") is None:
        log.warning("tracking_uri %s is set but mlflow is not installed (pip install mlflow); not tracking", uri)
        uri = ""
    with _TRACKERS_LOCK:
        if uri not in _TRACKERS:
            _TRACKERS[uri] = CuratorTracker(uri)
        return _TRACKERS[uri]


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: nested configs as MLflow params."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


class CuratorTracker:
    """Dataset and fine-tuning runs in one MLflow experiment, sent in order from a background thread.

    With uri '' it is disabled: every call is a no-op.
    """

    def __init__(self, uri: str, experiment: str = EXPERIMENT) -> None:
        self.uri = uri
        self.experiment = experiment
        self._client: Any = None
        self._experiment_id: str | None = None
        self._run_ids: dict[str, str] = {}
        self._failed: set[str] = set()
        self._queue: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue()
        if uri:
            threading.Thread(target=self._work, name="curator-mlflow", daemon=True).start()

    def flush(self) -> None:
        """Waits until everything submitted so far was sent (or given up)."""
        self._queue.join()

    def _submit(self, key: str, send: Callable[[], None]) -> None:
        if self.uri:
            self._queue.put((key, send))

    def _work(self) -> None:
        while True:
            key, send = self._queue.get()
            try:
                if key not in self._failed:
                    send()
            except Exception as exc:  # MLflow down, refused, misconfigured: tracking must not fail the work
                self._failed.add(key)
                log.warning("%s: not tracked to MLflow at %s (skipping the rest of this run): %s: %s",
                            key, self.uri, type(exc).__name__, str(exc)[:500])
            finally:
                self._queue.task_done()

    def _connect(self) -> tuple[Any, str]:
        """(MlflowClient, experiment id), the experiment created on first use."""
        if self._experiment_id is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
            self._experiment_id = experiment_id(self._client, self.experiment, artifact_location(self.uri))
        return self._client, self._experiment_id

    def _log(self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self._client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                               params=[Param(k, v) for k, v in param_values(params).items()])

    def _start_run(self, name: str, tags: dict[str, str], params: Mapping[str, Any]) -> str:
        client, experiment_id = self._connect()
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        self._log(run.info.run_id, params, {})
        return run.info.run_id

    def log_dataset(self, dataset_id: str, mode: str, path: Path, params: Mapping[str, Any],
                    counts: Mapping[str, int]) -> None:
        """A finished run for a built dataset, unless this dataset id already has one."""
        def send() -> None:
            client, experiment = self._connect()
            if finished_run(client, experiment, {ROLE_TAG: "dataset", DATASET_TAG: dataset_id}):
                return
            run_id = self._start_run(f"dataset-{dataset_id}", {ROLE_TAG: "dataset", DATASET_TAG: dataset_id,
                                                                MODE_TAG: mode}, params)
            self._log(run_id, {}, counts)
            client.log_artifacts(run_id, str(path), "dataset")
            client.set_terminated(run_id, "FINISHED")
            log.info("dataset %s logged to MLflow run %s", dataset_id, run_id)

        self._submit(f"dataset {dataset_id}", send)

    def finetune_run(self, operation_id: str, dataset_id: str, base_model: str,
                     params: Mapping[str, Any]) -> FineTuneRun:
        """Starts the run of a fine-tuning operation; use the result as a context manager around the training."""
        def send() -> None:
            tags = {ROLE_TAG: "finetune", OPERATION_TAG: operation_id, DATASET_TAG: dataset_id,
                    BASE_MODEL_TAG: base_model}
            self._run_ids[operation_id] = self._start_run(operation_id, tags, params)

        self._submit(operation_id, send)
        return FineTuneRun(self, operation_id)

    def log_step(self, operation_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """Metrics of one training step of an operation's run (after its finetune_run)."""
        self._submit(operation_id, lambda: self._log(self._run_ids[operation_id], {}, metrics, step))

    def end_finetune(self, operation_id: str, status: str, adapter_dir: str | None) -> None:
        """Ends an operation's run with `status`, uploading the adapter directory's files first when one is given."""
        def send() -> None:
            run_id = self._run_ids[operation_id]
            for path in adapter_files(adapter_dir or ""):
                self._client.log_artifact(run_id, str(path), "adapter")
            self._client.set_terminated(run_id, status)
            log.info("operation %s logged to MLflow run %s (%s)", operation_id, run_id, status)

        self._submit(operation_id, send)


class FineTuneRun:
    """Per-step metrics and the end of one operation's run; `adapter_dir` set before a clean exit is uploaded."""

    def __init__(self, tracker: CuratorTracker, operation_id: str) -> None:
        self.tracker = tracker
        self.operation_id = operation_id
        self.adapter_dir: str | None = None

    def progress(self, report: Callable[..., None]) -> Callable[[int, int, float, float, float], None]:
        """`report` (the operation's progress callback), also sending each step to MLflow."""
        def both(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> None:
            report(step, total, loss, lr, tokens_per_s)
            self.tracker.log_step(self.operation_id, step,
                                  {"loss": loss, "learning_rate": lr, "tokens_per_second": tokens_per_s})

        return both

    def __enter__(self) -> FineTuneRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, Cancelled) else "FAILED"
        self.tracker.end_finetune(self.operation_id, status, self.adapter_dir if kind is None else None)
