"""What every deltanas MLflow writer shares: the experiment, run filters with quoted values, param values.

    experiment = experiment_id(client, "deltanas-curator", artifact_location(uri))
    run_id = finished_run(client, experiment, {ROLE_TAG: "dataset", DATASET_TAG: dataset_id})
    client.log_batch(run_id, params=[Param(k, v) for k, v in param_values(params).items()])

The functions take an `MlflowClient`; this module itself imports no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
SQLITE = "sqlite:///"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of store `uri` keeps artifacts: beside the database file of a SQLite store (MLflow's
    default is ./mlruns of whatever the working directory is); None (the server's choice) otherwise."""
    if uri.startswith(SQLITE):
        return (Path(uri.removeprefix(SQLITE)).resolve().parent / "mlartifacts").as_uri()
    return None


def experiment_id(client: Any, name: str, location: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """The id of experiment `name`, created with `location` and `tags` when missing (or created by another process
    meanwhile); an existing one gets the `tags` it lacks."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=location, tags=dict(tags or {}))
        except MlflowException:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in (tags or {}).items():
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def quoted(value: str) -> str:
    """`value` as a string literal of an MLflow filter (which has no escapes: the quote it does not contain)."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(f"{value[:80]!r}: an MLflow filter cannot hold a value with both quote characters")


def tags_filter(tags: Mapping[str, str]) -> str:
    """The filter of runs that carry every one of `tags`: tags.`key` = 'value' and ..."""
    return " and ".join(f"tags.`{key}` = {quoted(value)}" for key, value in tags.items())


def finished_run(client: Any, experiment: str, tags: Mapping[str, str]) -> str | None:
    """The id of a FINISHED run with `tags`; runs with them that did not finish (an attempt that died half-way)
    are deleted, so that the caller can log the run again."""
    runs = client.search_runs([experiment], tags_filter(tags), max_results=10)
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done:
        return done[0].info.run_id
    for stale in runs:
        client.delete_run(stale.info.run_id)
    return None


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params as they are stored: strings of at most MAX_PARAM_CHARS, lists and tuples comma-joined."""
    return {k: (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v))[:MAX_PARAM_CHARS]
            for k, v in params.items()}
