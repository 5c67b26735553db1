"""Which MLflow store a command reads, and the searches in it (`deltanas searches`, `deltanas report`).

    uri = existing_store(None)            # --tracking-uri, else $MLFLOW_TRACKING_URI, else .deltanas/mlflow.db
    for row in list_searches(uri, "deltanas"): print(row.search_id, row.valid_rate)

Reading never creates a store: a SQLite file or directory that does not exist, a server that does not answer
and an experiment that is not there are each one ValueError naming what is wrong (`deltanas: error: ...`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # client.tracking imports mlflow: only the commands that read a store pay for it
    from client.tracking import Tracker

DEFAULT_STATE = Path(".deltanas")
# Set (unless the user set them) by the CLI at start and by a Tracker before it opens a store: no telemetry, and an
# outage costs seconds per call, not minutes of MLflow's own retries.
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
TRACKING_ENV = "MLFLOW_TRACKING_URI"
RUN_ID = re.compile(r"[0-9a-f]{32}")


def default_uri() -> str:
    return f"sqlite:///{(DEFAULT_STATE / 'mlflow.db').resolve()}"


def existing_store(uri: str | None) -> str:
    """The tracking URI to read: `uri`, else $MLFLOW_TRACKING_URI, else the default store; it must exist."""
    uri = uri or os.environ.get(TRACKING_ENV) or default_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ValueError(f"tracking_uri: no MLflow store at {path} (run a search first, or pass "
                             f"--tracking-uri or {TRACKING_ENV})")
    elif uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=10).raise_for_status()
        except requests.RequestException as exc:
            raise ValueError(f"tracking_uri: MLflow at {uri} does not answer ({type(exc).__name__})") from exc
    elif "://" not in uri or uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise ValueError(f"tracking_uri: no MLflow file store at {path}")
    return uri


def reader(uri: str, experiment: str) -> Tracker:
    """A Tracker on an existing store and experiment (no experiment is created)."""
    from mlflow.tracking import MlflowClient

    from client.tracking import Tracker

    if MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment) is None:
        raise ValueError(f"experiment: no experiment {experiment!r} at {uri}")
    return Tracker(uri, experiment)


def search_id_of(tracker: Tracker, ident: str) -> str:
    """The search id for `ident`: a search id, or the MLflow run id of a search's parent run."""
    if RUN_ID.fullmatch(ident):
        from mlflow.exceptions import MlflowException

        from deltanas.vocabulary import SEARCH_TAG

        try:
            run = tracker.client.get_run(ident)
        except MlflowException:
            run = None
        if run is not None and SEARCH_TAG in run.data.tags:
            return run.data.tags[SEARCH_TAG]
    return ident


@dataclass(frozen=True)
class SearchRow:
    search_id: str
    run_id: str
    started: str  # UTC, ISO 8601 to the minute
    status: str
    model: str
    modes: str
    candidates: int
    valid_rate: float | None
    best_accuracy: float | None
    improved: int = 0  # candidates beyond their same-budget reference's seed spread
    best_gain: float | None = None  # points over the same-budget reference


def list_searches(uri: str, experiment: str) -> list[SearchRow]:
    """Every search of the experiment, newest first: its candidates' valid rate, how many improved on their
    same-budget reference, the best gain and the best accuracy."""
    from deltanas.vocabulary import ROLE_TAG, SEARCH_TAG

    tracker = reader(uri, experiment)
    parents = tracker.client.search_runs([tracker.experiment_id], f"tags.`{ROLE_TAG}` = 'search'",
                                         order_by=["attributes.start_time DESC"], max_results=1000)
    rows = []
    for parent in parents:
        children = tracker.children(parent.info.run_id)
        valid = [c for c in children if c.data.metrics.get("valid") == 1.0]
        started = datetime.fromtimestamp(parent.info.start_time / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
        rows.append(SearchRow(
            parent.data.tags[SEARCH_TAG], parent.info.run_id, started, parent.info.status,
            parent.data.params.get("model", ""), parent.data.params.get("modes", ""), len(children),
            len(valid) / len(children) if children else None,
            max((c.data.metrics.get("accuracy", 0.0) for c in valid), default=None),
            sum(c.data.metrics.get("improved") == 1.0 for c in children),
            max((c.data.metrics["gain"] for c in valid if "gain" in c.data.metrics), default=None)))
    return rows
