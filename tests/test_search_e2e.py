"""The whole search end to end through the CLI: embedded services, the small LLM, real MNIST, MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from client.cli import main
from client.tracking import PARENT_TAG
from deltanas.testing.candidates import MODEL
from deltanas.vocabulary import BASELINE_FILE, CANDIDATE_TAG, CODE_FILE, PROMPT_FILE, RAW_OUTPUT_FILE, SEARCH_TAG

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> int:
    return main(["run", "--model", "smollm2-135m", "--baseline-names", MODEL, "--candidates", "2", "--cycles", "1",
                 "--max-new-tokens", "96", "--train-limit", "500", "--test-limit", "200", "--reference-seeds", "2",
                 *args])


def test_embedded_search_logs_one_child_run_per_candidate(tmp_path, monkeypatch, capsys, mlflow_uri) -> None:
    monkeypatch.setenv("DELTANAS_CURATOR_STATE_DIR", str(tmp_path / "curator"))
    assert run_cli("--tracking-uri", mlflow_uri, "--search-id", "e2e") == 0
    out = capsys.readouterr().out
    assert "candidate" in out and "outcome" in out and "reference" in out and "mlflow ui --backend-store-uri" in out
    assert "improved: " in out or "no improvement: none of 2 candidate(s) beat its same-budget reference" in out
    assert f"deltanas ui e2e --tracking-uri {mlflow_uri}" in out

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("deltanas")
    parents = client.search_runs([experiment.experiment_id], f"tags.`{SEARCH_TAG}` = 'e2e' and "
                                 "tags.`deltanas.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id], f"tags.`{PARENT_TAG}` = '{parents[0].info.run_id}'")
    assert len(children) == 2
    # The parent is the dashboard without another command: per-cycle metrics, the report, plots, table, note.
    parent = parents[0]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    valid = sum(c.data.tags["deltanas.status"] == "valid" for c in children)
    assert [(m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "delta/valid_rate")] == [
        (0, valid / 2)]
    assert parent.data.metrics["delta_candidates"] == 2
    assert {"report/report.txt", "report/candidates.json", "report/validity_per_cycle.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "### deltanas search `e2e`" in parent.data.tags["mlflow.note.content"]
    assert parent.data.params["datasets"] == "mnist" and "evaluators" not in parent.data.params
    assert len({c.data.tags[CANDIDATE_TAG] for c in children}) == 2
    for child in children:
        assert child.data.params["baseline"] == MODEL and child.data.params["mode"] == "delta"
        assert child.data.params["model"] and child.data.params["adapter"] == "base"
        assert {"valid", "output_tokens", "output_lines", "generation_s", "evaluation_s"} <= child.data.metrics.keys()
        assert ("accuracy" in child.data.metrics) == (child.data.tags["deltanas.status"] == "valid")
        assert child.data.metrics["output_tokens"] > 0
        tags = child.data.tags
        assert tags["deltanas.status"] in ("valid", "invalid", "duplicate")
        assert tags["deltanas.parent"] == tags["deltanas.root"] == MODEL and tags["deltanas.generation"] == "1"
        assert child.data.metrics["reference_accuracy"] > 0.1 and "reference_spread" in child.data.metrics
        # Constrained by default: the untuned SmolLM2 still writes a diff that applies, and forced text is counted.
        assert tags["deltanas.constrained"] == "true" and tags["deltanas.finish_reason"] in ("stop", "length")
        assert child.data.metrics["forced_tokens"] > 0
        assert tags["deltanas.failure_stage"] not in ("extract", "apply"), tags.get("deltanas.failure_reason")
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {RAW_OUTPUT_FILE, PROMPT_FILE, BASELINE_FILE} <= artifacts
        # The run spans the candidate's generation and evaluation, not the moment it was logged.
        span_s = (child.info.end_time - child.info.start_time) / 1000
        assert span_s >= child.data.metrics["generation_s"] - 0.5
        if child.data.tags["deltanas.status"] == "valid":
            assert CODE_FILE in artifacts

    # Resuming a finished search records nothing twice.
    assert run_cli("--tracking-uri", mlflow_uri, "--resume", "e2e") == 0
    assert "2 candidate(s) already recorded" in capsys.readouterr().out
    assert len(client.get_metric_history(parent.info.run_id, "delta/valid_rate")) == 1  # the dashboard: unchanged
    assert len(client.search_runs([experiment.experiment_id],
                                  f"tags.`{PARENT_TAG}` = '{parents[0].info.run_id}'")) == 2
