"""The search report: table numbers against hand-computed values from real child runs in an MLflow store,
plots and metrics on the parent run, and the LEMUR reference Spearman ρ on the installed records."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from scipy.stats import spearmanr

from client import lemur_fidelity
from client.cli import main
from client.records import CandidateResult
from client.report import build_report, make_report, parent_run, render, summary_metrics
from client.tracking import Tracker
from deltanas.vocabulary import CANDIDATE_TAG
from tests.support.records import EXPERIMENT, ROWS, SEARCH, candidate_record


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A search with 12 child runs, logged the way a search logs them."""
    path = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{path / 'mlflow.db'}"
    tracker = Tracker(uri, EXPERIMENT, artifact_location=str(path / "artifacts"))
    run_id = tracker.start_search(SEARCH, {"cycles": 2}, {})
    for i, row in enumerate(ROWS):
        tracker.log_candidate(run_id, SEARCH, candidate_record(i, row))
    tracker.finish(run_id)
    return {"uri": uri, "tracker": tracker, "run_id": run_id}


@pytest.fixture(scope="module")
def reported(store: dict[str, Any]) -> dict[str, Any]:
    report = make_report(store["uri"], EXPERIMENT, SEARCH)
    parent = store["tracker"].client.get_run(store["run_id"])
    return {**store, "report": report, "metrics": parent.data.metrics}


def test_mode_table_matches_hand_computed_values(reported: dict[str, Any]) -> None:
    delta, full = reported["report"].modes
    assert (delta.mode, delta.candidates, delta.valid, full.mode, full.candidates, full.valid) == (
        "delta", 6, 4, "full", 6, 2)
    assert delta.valid_rate == pytest.approx(4 / 6) and full.valid_rate == pytest.approx(2 / 6)
    assert delta.mean_accuracy == pytest.approx(0.7175) and full.mean_accuracy == pytest.approx(0.625)
    assert delta.best_accuracy == {"cifar-10": 0.55, "mnist": 0.92}
    assert full.best_accuracy == {"cifar-10": 0.45, "mnist": 0.80}
    assert delta.mean_output_lines == pytest.approx(35.0) and full.mean_output_lines == pytest.approx(1220 / 6)
    assert delta.mean_output_tokens == pytest.approx(2020 / 6) and full.mean_output_tokens == pytest.approx(2000.0)
    assert (delta.accepted, full.accepted) == (3, 1)
    assert delta.failures == {"apply": 1, "train": 1}
    assert full.failures == {"apply": 1, "static": 2, "train": 1}
    assert reported["report"].reduction_pct == pytest.approx(
        {"lines": 100 * (1 - 35 / (1220 / 6)), "tokens": 100 * (1 - (2020 / 6) / 2000)})
    # Against the same-budget reference (0.6 ± 0.01): delta 0.90, 0.92 improved, 0.50, 0.55 worse; full 0.80, 0.45.
    assert delta.outcomes == {"improved": 2, "worse": 2, "invalid": 2} and delta.effective_rate == 1.0
    assert full.outcomes == {"improved": 1, "worse": 1, "invalid": 4}
    assert delta.best_gain == pytest.approx(32.0) and full.best_gain == pytest.approx(20.0)
    assert [x.split()[1] for x in delta.improved] == ["+32.0", "+30.0"]


def test_cycles_and_proxy_spearman(reported: dict[str, Any]) -> None:
    report = reported["report"]
    cycles = [(c.mode, c.cycle, c.candidates, c.valid_rate, c.mean_accuracy) for c in report.cycles]
    expected = [("delta", 0, 3, 2 / 3, 0.70), ("delta", 1, 3, 2 / 3, 0.735),
                ("full", 0, 3, 1 / 3, 0.80), ("full", 1, 3, 1 / 3, 0.45)]
    for got, want in zip(cycles, expected, strict=True):
        assert got[:3] == want[:3] and got[3:] == pytest.approx(want[3:])
    pooled = next(r for r in report.proxy if r.dataset == "all")
    # Ranks differ by one in two of six pairs: rho = 1 - 6 * 2 / (6 * 35).
    assert (pooled.epoch, pooled.models) == (5, 6) and pooled.rho == pytest.approx(1 - 12 / 210)
    assert {r.dataset: r.models for r in report.proxy} == {"all": 6, "cifar-10": 3, "mnist": 3}


def test_parent_metrics_agree_exactly_with_child_runs(reported: dict[str, Any]) -> None:
    metrics, children = reported["metrics"], reported["tracker"].children(reported["run_id"])
    for mode in ("delta", "full"):
        runs = [r.data.metrics for r in children if r.data.params["mode"] == mode]
        valid = [m["accuracy"] for m in runs if m["valid"] == 1.0]
        assert metrics[f"{mode}_valid_rate"] == len(valid) / len(runs)
        assert metrics[f"{mode}_mean_accuracy"] == fmean(valid)
        assert metrics[f"{mode}_mean_output_lines"] == fmean(m["output_lines"] for m in runs)
        assert metrics[f"{mode}_accepted"] == sum(m["accepted"] for m in runs)
    assert metrics["delta_failed_apply"] == 1 and metrics["full_failed_static"] == 2
    assert metrics["output_lines_reduction_pct"] == reported["report"].reduction_pct["lines"]
    assert metrics["spearman_rho"] == pytest.approx(1 - 12 / 210)
    assert metrics["lemur_spearman_models_mnist_e5"] > 0 and "lemur_spearman_rho_cifar-10_e50" in metrics


def test_plots_and_report_files_are_parent_artifacts(reported: dict[str, Any], tmp_path: Path) -> None:
    client = reported["tracker"].client
    names = {Path(f.path).name for f in client.list_artifacts(reported["run_id"], "report")}
    assert names == {"report.txt", "report.json", "candidates.json", "lineage.json", "validity_per_cycle.png",
                     "accuracy_per_cycle.png", "novelty_per_cycle.png"}
    graph = json.loads(Path(client.download_artifacts(reported["run_id"], "report/lineage.json", str(tmp_path)))
                       .read_text())
    assert len(graph["edges"]) == len(ROWS) and {e[0] for e in graph["edges"]} == {"Base-mnist", "Base-cifar-10"}
    assert {n["id"] for n in graph["nodes"]} == {e[1] for e in graph["edges"]} | {"Base-mnist", "Base-cifar-10"}
    png = Path(client.download_artifacts(reported["run_id"], "report/accuracy_per_cycle.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_the_parent_is_a_dashboard_with_per_cycle_metrics_a_table_and_a_note(reported: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    client, run_id = reported["tracker"].client, reported["run_id"]
    history = {(m.step, m.value) for m in client.get_metric_history(run_id, "delta/valid_rate")}
    assert history == {(0, 2 / 3), (1, 2 / 3)}
    # cycle 1 of delta: mnist 0.92 and cifar-10 0.55 valid, both against a baseline at 0.6; one train failure
    assert {(m.step, m.value) for m in client.get_metric_history(run_id, "delta/best_accuracy")} == {(0, 0.9),
                                                                                                    (1, 0.92)}
    # ... and every outcome against the same-budget reference (0.6): delta 0.90 and 0.92 improved, 0.50 and 0.55 worse
    assert {(m.step, m.value) for m in client.get_metric_history(run_id, "delta/improved")} == {(0, 1), (1, 1)}
    assert {(m.step, round(m.value, 6)) for m in client.get_metric_history(run_id, "delta/best_gain")} == {
        (0, 30.0), (1, 32.0)}
    assert {(m.step, round(m.value, 6)) for m in client.get_metric_history(run_id, "delta/best_so_far")} == {
        (0, 30.0), (1, 32.0)}
    assert {(m.step, m.value) for m in client.get_metric_history(run_id, "delta/effective_rate")} == {(0, 1.0),
                                                                                                      (1, 1.0)}
    assert not any("above_baseline" in k or "lemur_accuracy" in k for k in client.get_run(run_id).data.metrics)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "full/failed_static")] == [(0, 2.0)]
    table = json.loads(Path(client.download_artifacts(run_id, "report/candidates.json", str(tmp_path))).read_text())
    assert len(table["data"]) == len(ROWS) and table["columns"][:3] == ["candidate_id", "cycle", "mode"]
    assert sorted(row[0] for row in table["data"]) == sorted(r.data.tags[CANDIDATE_TAG]
                                                             for r in reported["tracker"].children(run_id))
    tags = client.get_run(run_id).data.tags
    assert {"path": "report/candidates.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])
    assert tags["mlflow.note.content"].startswith(f"### deltanas search `{SEARCH}`") and "66.7%" in tags[
        "mlflow.note.content"]


def test_reporting_again_changes_nothing_that_is_right(reported: dict[str, Any]) -> None:
    client, run_id = reported["tracker"].client, reported["run_id"]

    def points() -> dict[str, list[tuple[int, float]]]:
        keys = client.get_run(run_id).data.metrics
        return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}

    before = points()
    make_report(reported["uri"], EXPERIMENT, SEARCH)
    make_report(reported["uri"], EXPERIMENT, SEARCH)
    assert points() == before
    table = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert table.count({"path": "report/candidates.json", "type": "table"}) == 1


def test_mlflow_conventions_of_the_store(store: dict[str, Any]) -> None:
    tracker = store["tracker"]
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view
    parent = tracker.client.get_run(store["run_id"])
    assert parent.data.tags["mlflow.source.name"] == "deltanas" and parent.data.tags["mlflow.user"]
    child = tracker.children(store["run_id"])[0]
    assert child.data.tags["mlflow.source.type"] == "LOCAL"
    assert re.fullmatch(r"[0-9a-f]{40}", child.data.tags.get("mlflow.source.git.commit", "")), "a checkout's commit"
    tracker.start_search("s-lists", {"datasets": ["mnist", "cifar-10"]}, {})
    assert parent_run(tracker, "s-lists").data.params["datasets"] == "mnist,cifar-10"


def test_report_command_prints_the_table(store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", SEARCH, "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    for needle in ("improved (beyond the seed spread)", "+32.00", "delta: 2 improved: ", "full: 1 improved: ",
                   "valid rate", "66.7%", "33.3%", "0.7175", "0.6250", "best accuracy cifar-10", "failed at static",
                   "output lines 82.8% shorter", "output tokens 83.2% shorter", "0.943 (6)", "LEMUR reference"):
        assert needle in out, needle


def test_unknown_search_id_raises_and_empty_search_reports(store: dict[str, Any],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "nope", "--tracking-uri", store["uri"]]) == 2
    assert "deltanas: error: search_id: no search 'nope'" in capsys.readouterr().err
    store["tracker"].start_search("s-empty", {}, {})
    assert main(["report", "s-empty", "--tracking-uri", store["uri"]]) == 0
    assert "s-empty: no candidates logged yet" in capsys.readouterr().out


def test_single_mode_without_retraining_has_no_reduction_or_spearman() -> None:
    common = {"cycle": 0, "baseline": "B", "dataset": "mnist", "mode": "delta", "failure_reason": "",
              "lemur_accuracy": 0.5, "diff_lines": 26, "output_tokens": 300, "output_lines": 30,
              "generation_s": 1.0, "evaluation_s": 1.0}
    cands = [CandidateResult("a", index=0, status="valid", failure_stage="", accuracy=0.9, novelty_jaccard=0.4,
                             accepted=True, **common),
             CandidateResult("b", index=1, status="invalid", failure_stage="unknown", accuracy=0.0, **common)]
    report = build_report("s", cands, reference=False)
    metrics = summary_metrics(report)
    assert report.reduction_pct == {} and report.proxy == []
    assert not any(k.startswith(("spearman", "output_", "full_")) for k in metrics)
    assert metrics["delta_valid_rate"] == 0.5 and "delta vs full" not in render(report)


def test_spearman_matches_scipy_with_ties() -> None:
    x, y = [0.1, 0.4, 0.4, 0.3, 0.9, 0.2], [1.0, 3.0, 2.0, 2.0, 5.0, 0.5]
    assert lemur_fidelity.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(lemur_fidelity.spearman([1.0], [2.0]))
    assert math.isnan(lemur_fidelity.spearman([1.0, 1.0], [2.0, 3.0]))


def test_lemur_reference_on_the_real_records() -> None:
    rows = lemur_fidelity.reference()
    assert {(r.dataset, r.epoch) for r in rows} == {(d, e) for d in lemur_fidelity.DATASETS for e in (5, 10, 50)}
    for r in rows:
        assert r.models > 0 and 0.2 < r.rho <= 1.0, r
    mnist5 = next(r for r in rows if (r.dataset, r.epoch) == ("mnist", 5))
    assert mnist5.models > 1000


def test_dataset_lineage_and_system_metrics_on_a_search_run(store: dict[str, Any]) -> None:
    from client.config import SearchConfig

    tracker = store["tracker"]
    run_id = tracker.start_search("s-lineage", {}, {})
    cfg = SearchConfig(datasets=["mnist", "cifar-10"], baseline_names=["Base"], train_limit=300, test_limit=200)
    tracker.log_datasets(run_id, cfg.lineage())
    tracker.log_datasets(run_id, cfg.lineage())  # a resume: nothing new
    with tracker.system_metrics(run_id, interval_s=0.2):
        time.sleep(1.5)
    run = tracker.client.get_run(run_id)
    inputs = {(d.dataset.name, d.dataset.digest): d for d in run.inputs.dataset_inputs}
    assert sorted(name for name, _ in inputs) == ["cifar-10", "mnist"]
    mnist = next(d for (name, _), d in inputs.items() if name == "mnist")
    assert json.loads(mnist.dataset.profile) == {"train_images": 300, "test_images": 200}
    assert json.loads(mnist.dataset.source)["baselines"] == "Base"
    assert {t.key: t.value for t in mnist.tags}["mlflow.data.context"] == "evaluation"
    assert "system/cpu_utilization_percentage" in run.data.metrics and "system/system_memory_usage_megabytes" in (
        run.data.metrics)


def test_a_candidate_reads_back_as_it_was_logged(store: dict[str, Any]) -> None:
    """One shape: every field that `to_record` writes, `from_run` reads back (the records above, via the store)."""
    children = {r.data.tags[CANDIDATE_TAG]: r for r in store["tracker"].children(store["run_id"])}
    for i, row in enumerate(ROWS):
        record = candidate_record(i, row)
        back = CandidateResult.from_run(children[record.candidate_id])
        assert back.to_record(record.artifacts) == replace(record, start_ms=None)
        assert back.valid == row[3] and back.hyperparameters == {"lr": 0.01} and back.eval_metrics == {
            "train_loss": 1.2}
