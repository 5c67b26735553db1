"""The writes of the tracker to one MLflow experiment, each idempotent so that a journal replays safely: a child run
per candidate (found again by its candidate tag), a reference run per key, the parent run's dashboard (only the
points it lacks), dataset lineage, logged adapter models.

    store = MlflowStore(MlflowClient(uri), experiment_id)
    op.apply(store)                     # client.journal ops call these methods
"""

from __future__ import annotations

import functools
import getpass
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from deltanas.adapters import adapter_files
from deltanas.mlflowutil import finished_run, param_values, quoted, tags_filter
from deltanas.vocabulary import CANDIDATE_TAG, REFERENCE_TAG, ROLE_TAG, SEARCH_TAG

if TYPE_CHECKING:
    from client.journal import AdapterOp, CandidateOp, ReferenceOp, SummaryOp

PARENT_TAG = MLFLOW_PARENT_RUN_ID
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"  # how the UI knows an artifact is a table
METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


class MlflowStore:
    def __init__(self, client: Any, experiment_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id

    def create_child(self, op: CandidateOp) -> str:
        """The candidate's child run (the existing one when a replay finds it done; an unfinished one is redone)."""
        if run_id := finished_run(self.client, self.experiment_id, {CANDIDATE_TAG: op.candidate_id}):
            return run_id
        tags = {**source_tags(), PARENT_TAG: op.parent_run_id, CANDIDATE_TAG: op.candidate_id,
                SEARCH_TAG: op.search_id, ROLE_TAG: "candidate", **op.tags}
        run = self.client.create_run(self.experiment_id, run_name=op.candidate_id,
                                     start_time=op.start_ms or op.time_ms, tags=tags)
        self._fill(run.info.run_id, op.params, op.metrics, op.artifacts, op.time_ms)  # ends when it was evaluated
        return run.info.run_id

    def create_reference(self, op: ReferenceOp) -> None:
        """A same-budget reference's run (role `reference`), once per key."""
        if finished_run(self.client, self.experiment_id, {REFERENCE_TAG: op.key, ROLE_TAG: "reference"}):
            return
        run = self.client.create_run(self.experiment_id, run_name=op.name, start_time=op.time_ms,
                                     tags={**source_tags(), ROLE_TAG: "reference", REFERENCE_TAG: op.key, **op.tags})
        self._fill(run.info.run_id, op.params, op.metrics, op.artifacts, op.time_ms)

    def _fill(self, run_id: str, params: dict[str, Any], metrics: dict[str, float], artifacts: dict[str, str],
              time_ms: int) -> None:
        self.log(run_id, params, metrics, {}, time_ms)
        for name, text in artifacts.items():
            if text:
                self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, "FINISHED", end_time=time_ms)

    def child_run(self, candidate_id: str) -> str:
        """LookupError when the store has no finished child run of that candidate."""
        runs = self.client.search_runs([self.experiment_id], tags_filter({CANDIDATE_TAG: candidate_id}),
                                       max_results=10)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if not finished:
            raise LookupError(f"candidate_id: no finished child run for {candidate_id!r}")
        return finished[0].info.run_id

    def log_dashboard(self, op: SummaryOp) -> None:
        """Only the metric points and tags that differ from what the run holds, so a re-run adds nothing."""
        run = self.client.get_run(op.run_id)
        latest = run.data.metrics
        points = [Metric(k, float(v), op.time_ms, 0) for k, v in op.metrics.items() if latest.get(k) != float(v)]
        history: dict[str, set[tuple[int, float]]] = {}
        for step, values in op.steps.items():
            for key, value in values.items():
                if key not in history:
                    history[key] = ({(m.step, m.value) for m in self.client.get_metric_history(op.run_id, key)}
                                    if key in latest else set())
                if (int(step), float(value)) not in history[key]:
                    points.append(Metric(key, float(value), op.time_ms, int(step)))
        tags = dict(op.tags)
        if op.tables:
            known = json.loads(run.data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
            known += [t for t in ({"path": path, "type": "table"} for path in op.tables) if t not in known]
            tags[LOGGED_ARTIFACTS_TAG] = json.dumps(known)
        tags = {k: v for k, v in tags.items() if run.data.tags.get(k) != v}
        for i in range(0, len(points), METRICS_PER_BATCH):
            self.client.log_batch(op.run_id, metrics=points[i:i + METRICS_PER_BATCH])
        if tags:
            self.client.log_batch(op.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        for name, text in op.artifacts.items():
            self.client.log_text(op.run_id, text, name)

    def log_inputs(self, run_id: str, datasets: list[dict[str, str]]) -> None:
        self.client.log_inputs(run_id, [dataset_input(d) for d in datasets])

    def log_adapter(self, op: AdapterOp) -> None:
        """The adapter as a logged model of the run (once per name and run), its dataset as the run's input."""
        models = [m for m in self.client.search_logged_models([self.experiment_id], f"name = {quoted(op.name)}")
                  if m.source_run_id == op.run_id]
        model = next((m for m in models if str(m.status) == "READY"), None)
        if model is None:  # none yet, or a crash left one half-made (it stays PENDING, and is not linked)
            model = self.client.create_logged_model(self.experiment_id, op.name, op.run_id, params=op.params,
                                                    tags={ROLE_TAG: "adapter"}, model_type="peft-lora")
            if files := adapter_files(op.path):
                with tempfile.TemporaryDirectory() as tmp:
                    for f in files:
                        shutil.copy2(f, tmp)
                    self.client.log_model_artifacts(model.model_id, tmp)
            self.client.finalize_logged_model(model.model_id, "READY")
        data = op.dataset
        self.client.log_inputs(op.run_id, [dataset_input({**data, "context": "train"})])
        if model.model_id not in {o.model_id for o in self.client.get_run(op.run_id).outputs.model_outputs}:
            self.client.log_outputs(op.run_id, [LoggedModelOutput(model.model_id, op.step)])
            self.client.log_batch(op.run_id, metrics=[
                Metric(k, float(v), op.time_ms, op.step, model_id=model.model_id, dataset_name=data["name"],
                       dataset_digest=data["digest"]) for k, v in op.metrics.items()])

    def log(self, run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
            time_ms: int | None = None) -> None:
        stamp = time_ms or int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, v) for k, v in param_values(params).items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def terminate(self, run_id: str, status: str, time_ms: int) -> None:
        self.client.set_terminated(run_id, status, end_time=time_ms)


def dataset_input(d: dict[str, str]) -> DatasetInput:
    """A dataset of the run's lineage: {name, digest, source, profile, context (train, evaluation)}."""
    return DatasetInput(Dataset(d["name"], d["digest"], "deltanas", d["source"], profile=d["profile"]),
                        [InputTag("mlflow.data.context", d["context"])])


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
