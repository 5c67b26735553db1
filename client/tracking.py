"""MLflow tracking: one parent run per search, exactly one child run per candidate.

Child runs carry the tag `deltanas.candidate_id`; logging a candidate that already has a finished child
run is a no-op, so a resumed search never records a candidate twice.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

CANDIDATE_TAG = "deltanas.candidate_id"
SEARCH_TAG = "deltanas.search_id"
PARENT_TAG = "mlflow.parentRunId"
# Artifact file names of a candidate's child run.
RAW_OUTPUT_FILE = "llm_output.txt"
DIFF_FILE = "candidate.diff"
CODE_FILE = "model.py"
FAILURE_FILE = "failure.txt"


@dataclass
class CandidateRecord:
    """Everything logged for one candidate."""

    candidate_id: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: dict[str, str]


class Tracker:
    """Parent/child runs in one experiment of an MLflow store (`sqlite:///...` or a server URI)."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found else
                              self.client.create_experiment(experiment, artifact_location=artifact_location))
        self._logged: set[str] = set()

    def start_search(self, search_id: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Creates the search's parent run, or returns the existing one when resuming."""
        existing = self.client.search_runs([self.experiment_id], f"tags.`{SEARCH_TAG}` = '{search_id}' "
                                           f"and tags.`deltanas.role` = 'search'", max_results=1)
        if existing:
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self._logged = {r.data.tags[CANDIDATE_TAG] for r in self.children(run_id)}
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=search_id,
                                     tags={SEARCH_TAG: search_id, "deltanas.role": "search", **tags})
        self._log(run.info.run_id, params, {}, {})
        return run.info.run_id

    def children(self, parent_run_id: str) -> list[Any]:
        """Finished child runs of a search, one per logged candidate."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                           max_results=1000, page_token=token)
            runs.extend(r for r in page if r.info.status == "FINISHED")
            token = page.token
            if not token:
                return runs

    def is_logged(self, candidate_id: str) -> bool:
        return candidate_id in self._logged

    def log_candidate(self, parent_run_id: str, search_id: str, record: CandidateRecord) -> str | None:
        """Logs one candidate as a child run; None if it was already logged."""
        if record.candidate_id in self._logged:
            return None
        # A crash between create_run and set_terminated leaves an unfinished run: remove it, then redo.
        stale = self.client.search_runs([self.experiment_id],
                                        f"tags.`{CANDIDATE_TAG}` = '{record.candidate_id}'", max_results=10)
        for run in stale:
            self.client.delete_run(run.info.run_id)
        run = self.client.create_run(self.experiment_id, run_name=record.candidate_id, tags={
            PARENT_TAG: parent_run_id, CANDIDATE_TAG: record.candidate_id, SEARCH_TAG: search_id,
            "deltanas.role": "candidate", **record.tags})
        run_id = run.info.run_id
        self._log(run_id, record.params, record.metrics, {})
        for name, text in record.artifacts.items():
            if text:
                self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, "FINISHED")
        self._logged.add(record.candidate_id)
        return run_id

    def log_summary(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, str]) -> None:
        self._log(run_id, {}, metrics, {})
        for name, text in artifacts.items():
            self.client.log_text(run_id, text, name)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def _log(self, run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> None:
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), int(time.time() * 1000), 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
