"""deltanas.mlflowutil on a real MLflow SQLite store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from deltanas.mlflowutil import (
    MAX_PARAM_CHARS,
    artifact_location,
    experiment_id,
    finished_run,
    param_values,
    quoted,
    tags_filter,
)


def test_filter_values_are_quoted_with_the_quote_they_do_not_hold() -> None:
    assert quoted("abc") == "'abc'" and quoted("it's") == '"it\'s"'
    expected = "tags.`deltanas.role` = 'dataset' and tags.`x` = \"o'k\""
    assert tags_filter({"deltanas.role": "dataset", "x": "o'k"}) == expected
    with pytest.raises(ValueError, match="both quote characters"):
        quoted("'\"")


def test_params_are_strings_lists_joined_and_cut() -> None:
    values = param_values({"modules": ("q_proj", "v_proj"), "r": 32, "long": "x" * (MAX_PARAM_CHARS + 5)})
    assert values["modules"] == "q_proj,v_proj" and values["r"] == "32" and len(values["long"]) == MAX_PARAM_CHARS


def test_experiment_is_created_once_and_a_finished_run_is_found_an_unfinished_one_cleared(mlflow_uri: str) -> None:
    client = MlflowClient(tracking_uri=mlflow_uri)
    location = artifact_location(mlflow_uri)
    assert location is not None and location.endswith("/mlartifacts") and artifact_location("http://x:5000") is None
    first = experiment_id(client, "exp", location, {"kind": "a"})
    assert experiment_id(client, "exp", None, {"kind": "b"}) == first
    experiment = client.get_experiment(first)
    assert experiment.tags["kind"] == "b" and experiment.artifact_location == location
    tags = {"deltanas.dataset_id": "it's"}
    stale = client.create_run(first, tags=tags).info.run_id
    assert finished_run(client, first, tags) is None
    assert client.get_run(stale).info.lifecycle_stage == "deleted"
    done = client.create_run(first, tags=tags).info.run_id
    client.set_terminated(done, "FINISHED")
    assert finished_run(client, first, tags) == done
