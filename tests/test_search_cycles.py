"""The closed-loop search: bad input refused before any work starts, the presets, the config a resume
restores; (slow) a two-cycle delta-vs-full A/B search with the small LLM whose report agrees with its child
runs, and the whole loop (fine-tune, repair, re-train, resume) with a scripted LLM behind the OpenAI backend.

    .venv/bin/python -m pytest -q tests/test_search_cycles.py -m "not slow"
"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

import deltadiff
from client.channels import Endpoints, Services
from client.cli import PRESET_DIR, main
from client.config import SearchConfig, stored_config
from client.embedded import EmbeddedServices
from client.report import make_report
from client.search import Search, repair_id
from client.tracking import Tracker
from deltanas.config import build
from deltanas.lemur import DATASETS
from deltanas.testing.candidates import ANSWER, BASE, MODEL
from deltanas.vocabulary import CANDIDATE_TAG
from tests.support.llm_servers import FakeServer


def _no_services(*args: object) -> None:
    raise AssertionError("services were started for a search that had to be refused")


@pytest.mark.parametrize(("flags", "message"), [
    (["--candidates", "0"], "candidates: must be at least 1"),
    (["--cycles", "0"], "cycles: must be at least 1"),
    (["--accept-accuracy", "1.5"], "accept_accuracy: must be within [0, 1]"),
    (["--accept-accuracy", "-0.1"], "accept_accuracy: must be within [0, 1]"),
    (["--repair-rounds", "-1"], "repair_rounds: must not be negative"),
    (["--retrain-top-k", "-2"], "retrain_top_k: must not be negative"),
    (["--retrain-epochs", "0"], "retrain_epochs: must be at least 1"),
    (["--modes", "delta,diff"], "modes: must be a subset of ['delta', 'full']"),
    (["--candidates", "three"], "candidates: cannot read 'three' as int"),
])
def test_bad_search_config_is_refused_before_services_start(flags, message, mlflow_uri, monkeypatch, capsys) -> None:
    monkeypatch.setattr(EmbeddedServices, "start", _no_services)
    assert main(["run", "--tracking-uri", mlflow_uri, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deltanas: error: {message}"), err


def test_unknown_preset_keys_are_refused(tmp_path: Path, mlflow_uri, monkeypatch, capsys) -> None:
    monkeypatch.setattr(EmbeddedServices, "start", _no_services)
    preset = tmp_path / "mine.toml"
    preset.write_text('datasets = ["mnist"]\ncandidate = 4\n')
    assert main(["run", "--tracking-uri", mlflow_uri, "--preset", str(preset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deltanas: error: preset {preset}: unknown key(s) candidate; known: "), err
    assert main(["run", "--tracking-uri", mlflow_uri, "--preset", "nope"]) == 2
    assert "preset: no preset 'nope' (known: embedded, paper" in capsys.readouterr().err


def test_resume_of_an_unknown_search_names_it(mlflow_uri, monkeypatch, capsys) -> None:
    monkeypatch.setattr(EmbeddedServices, "start", _no_services)
    assert main(["run", "--tracking-uri", mlflow_uri, "--resume", "s-missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deltanas: error: search_id: no search 's-missing' in this experiment"), err


def test_presets_paper_protocol_and_tiny_default() -> None:
    paper = build(SearchConfig, tomllib.loads((PRESET_DIR / "paper.toml").read_text()))
    per_cycle = len(paper.datasets) * paper.baselines * len(paper.modes) * paper.candidates
    assert sorted(paper.datasets) == sorted(DATASETS) and paper.cycles == 22 and 45 <= per_cycle <= 55
    assert paper.finetune and paper.epochs == 1 and paper.retrain_top_k > 0
    embedded = build(SearchConfig, tomllib.loads((PRESET_DIR / "embedded.toml").read_text()))
    assert embedded.cycles * embedded.candidates <= 12 and embedded.train_limit > 0
    assert embedded.selection == "evolve" and embedded.reference_seeds >= 3 and paper.selection == "paging"
    assert not embedded.finetune and embedded.repair_rounds == 0 and embedded.retrain_top_k == 0


def test_a_resumed_search_gets_the_config_its_parent_run_recorded(mlflow_uri) -> None:
    cfg = SearchConfig(search_id="s-cfg", datasets=["mnist", "svhn"], modes=["delta", "full"], candidates=4,
                       cycles=3, baseline_names=[MODEL], finetune=True, accept_accuracy=0.25, temperature=0.5)
    tracker = Tracker(mlflow_uri, "deltanas")
    run_id = tracker.start_search(cfg.search_id, {k: v for k, v in asdict(cfg).items() if k != "search_id"}, {})
    params = tracker.client.get_run(run_id).data.params
    assert build(SearchConfig, {**stored_config(params), "search_id": "s-cfg"}) == cfg
    assert params["datasets"] == "mnist,svhn" and params["modes"] == "delta,full"  # lists as MLflow shows them
    # A store written before lists were comma-joined holds their repr: it still resumes.
    legacy = {**params, "datasets": "['mnist', 'svhn']", "modes": "['delta', 'full']", "baseline_names": f"['{MODEL}']"}
    assert build(SearchConfig, {**stored_config(legacy), "search_id": "s-cfg"}) == cfg


@pytest.mark.slow
def test_two_cycle_ab_search_report_agrees_with_child_runs(tmp_path: Path, mlflow_uri, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DELTANAS_CURATOR_STATE_DIR", str(tmp_path / "curator"))
    assert main(["run", "--model", "smollm2-135m", "--tracking-uri", mlflow_uri, "--search-id", "ab",
                 "--modes", "delta,full", "--cycles", "2", "--candidates", "2", "--baseline-names", MODEL,
                 "--max-new-tokens", "24", "--train-limit", "500", "--test-limit", "200",
                 "--reference-seeds", "2"]) == 0
    assert "0 already recorded" not in capsys.readouterr().out

    report = make_report(mlflow_uri, "deltanas", "ab", reference=False)
    tracker = Tracker(mlflow_uri, "deltanas")
    (parent,) = tracker.client.search_runs([tracker.experiment_id], "tags.`deltanas.search_id` = 'ab' and "
                                           "tags.`deltanas.role` = 'search'")
    children = tracker.children(parent.info.run_id)
    assert len({c.data.tags[CANDIDATE_TAG] for c in children}) == len(children) == 2 * 2 * 2
    assert Counter((c.data.params["mode"], c.data.params["cycle"]) for c in children) == {
        (mode, cycle): 2 for mode in ("delta", "full") for cycle in ("0", "1")}
    by_mode = {m.mode: m for m in report.modes}
    assert set(by_mode) == {"delta", "full"}
    for mode, summary in by_mode.items():
        mine = [c for c in children if c.data.params["mode"] == mode]
        valid = [c for c in mine if c.data.tags["deltanas.status"] == "valid"]
        assert summary.candidates == len(mine) == 4
        assert summary.valid == len(valid) and summary.valid_rate == len(valid) / 4
        assert summary.failures == dict(Counter(c.data.tags["deltanas.failure_stage"] for c in mine if c not in valid))
    assert sorted((c.mode, c.cycle, c.candidates) for c in report.cycles) == [
        ("delta", 0, 2), ("delta", 1, 2), ("full", 0, 2), ("full", 1, 2)]
    assert parent.data.metrics["delta_candidates"] == 4.0


def _wider(width: int) -> str:
    """MODEL with its second conv block `width` channels wide, as an LLM answer."""
    tail = ",\n            torch.nn.ReLU(inplace=True),\n        ]\n\n        self._last"
    code = (BASE.replace("torch.nn.Conv2d(32, 32,", f"torch.nn.Conv2d(32, {width},")
            .replace("torch.nn.BatchNorm2d(32)" + tail, f"torch.nn.BatchNorm2d({width})" + tail)
            .replace("self._last_channels = 32", f"self._last_channels = {width}"))
    return f"```diff\n{deltadiff.make_diff(BASE, code)}```"


class ScriptedLLM(FakeServer):
    """An OpenAI-compatible LLM server with a script: a repair request (it carries the failure feedback) and
    an even seed get a valid diff of MODEL (the same one, or with `distinct` one per seed), an odd seed gets prose
    without a diff."""

    requests: ClassVar[list[dict]] = []
    distinct: ClassVar[bool] = False
    break_next: ClassVar[bool] = False  # the next even seed gets a diff whose file does not parse (once)

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            return super().do_POST()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        prompt = body["messages"][-1]["content"]
        valid = _wider(33 + body["seed"] % 97) if self.distinct else ANSWER
        text = valid if "previous diff failed" in prompt or body["seed"] % 2 == 0 else "Add more layers."
        if text is valid and ScriptedLLM.break_next:
            ScriptedLLM.break_next = False
            broken = BASE.replace("self.device = device", "self.device = device\n        x = (")
            text = f"```diff\n{deltadiff.make_diff(BASE, broken)}```"
        usage = {"prompt_tokens": 900, "completion_tokens": len(text.split())}
        self._reply({"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": usage})


@pytest.fixture()
def scripted_generator() -> Iterator[str]:
    from generator_svc.backends.options import OpenAIOptions
    from generator_svc.config import GeneratorConfig
    from generator_svc.service import build_server

    ScriptedLLM.adapters, ScriptedLLM.requests, ScriptedLLM.distinct, ScriptedLLM.break_next = {}, [], False, False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedLLM)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = build_server(GeneratorConfig(port=0, backend="openai", openai=OpenAIOptions(
        url=f"http://127.0.0.1:{httpd.server_address[1]}"))).start()
    yield server.address
    server.stop(0)
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_closed_loop_finetunes_repairs_and_retrains(curator_server, evaluator_server, scripted_generator,
                                                    mlflow_uri) -> None:
    ScriptedLLM.distinct = True  # every valid answer another program: none is dropped as a duplicate here
    cfg = SearchConfig(search_id="loop", baseline_names=[MODEL], candidates=2, cycles=2, finetune=True,
                       finetune_steps=1, finetune_accumulation=1, repair_rounds=1, retrain_top_k=1, retrain_epochs=2,
                       train_limit=500, test_limit=200, eval_timeout_s=300)
    tracker = Tracker(mlflow_uri, "deltanas")
    endpoints = Endpoints(curator_server.address, scripted_generator, [evaluator_server.address])
    with Services(endpoints) as services:
        result = Search(cfg, services, tracker).run()
        # Two cycles of two candidates and one repair each: the odd seed's prose fails at extract.
        assert sorted((r.cycle, r.attempt, r.status, r.failure_stage) for r in result.results) == [
            (c, a, s, f) for c in (0, 1) for a, s, f in [(0, "invalid", "extract"), (0, "valid", ""), (1, "valid", "")]]
        repairs = [r for r in result.results if r.attempt == 1]
        assert all(r.candidate_id == repair_id(r.repaired_from, 1) for r in repairs)
        feedback = [b["messages"][-1]["content"] for b in ScriptedLLM.requests if "previous diff failed" in
                    b["messages"][-1]["content"]]
        assert len(feedback) == 2 and all("extract: no diff found" in text for text in feedback)
        # Cycle 1 generated with the adapter fine-tuned after cycle 0, loaded into the generator by path.
        assert {b["model"] for b in ScriptedLLM.requests[3:]} == {"loop-c1-delta"}
        parent = tracker.client.get_run(result.run_id)
        adapter = Path(parent.data.tags["deltanas.adapter.c1.delta"])
        assert ScriptedLLM.adapters == {"loop-c1-delta": str(adapter)} and (adapter / "adapter_config.json").exists()
        # ... and is an MLflow logged model: the parent run's output at step 1, its files, its dataset as input.
        (model,) = tracker.client.search_logged_models([tracker.experiment_id])
        assert (model.name, model.source_run_id, str(model.status)) == ("loop-c1-delta", result.run_id, "READY")
        assert model.params["mode"] == "delta" and model.params["cycle"] == "1"
        logged = {f.path for f in tracker.client.list_logged_model_artifacts(model.model_id)}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= logged and not any("/" in f for f in logged)
        assert [(o.model_id, o.step) for o in parent.outputs.model_outputs] == [(model.model_id, 1)]
        trained_on = [d.dataset for d in parent.inputs.dataset_inputs
                      if {t.value for t in d.tags} == {"train"}]
        assert [(d.name, d.digest) for d in trained_on] == [("delta-pairs", model.params["dataset_id"])]
        (loss,) = tracker.client.get_logged_model(model.model_id).metrics  # the model page: loss on that dataset
        assert (loss.key, loss.step, loss.dataset_name, loss.dataset_digest) == (
            "delta/finetune_loss", 1, "delta-pairs", model.params["dataset_id"])

        children = tracker.children(result.run_id)
        assert len(children) == 6
        for run in children:
            tags, params = run.data.tags, run.data.params
            assert tags["deltanas.attempt"] == ("1" if "repaired_from" in params else "0")
            assert params["adapter"] == ("base" if params["cycle"] == "0" else "loop-c1-delta")
        retrained = [r for r in children if "accuracy_long" in r.data.metrics]
        assert len(retrained) == 2 and {r.data.params["long_epochs"] for r in retrained} == {"2"}
        assert {r.data.params["cycle"] for r in retrained} == {"0", "1"}
        for run in retrained:  # the cycle's most accurate valid candidate
            cycle = [r for r in children if r.data.params["cycle"] == run.data.params["cycle"]]
            assert run.data.metrics["accuracy"] == max(r.data.metrics.get("accuracy", 0.0) for r in cycle)
        invalid = [r for r in children if r.data.tags["deltanas.status"] == "invalid"]
        assert invalid and not any({"accuracy", "novelty_jaccard"} & r.data.metrics.keys() for r in invalid)

        # Run again: everything is recorded, nothing is generated, trained or re-trained twice.
        calls = len(ScriptedLLM.requests)
        again = Search(cfg, services, tracker).run()
        assert (again.skipped, again.results, len(ScriptedLLM.requests)) == (6, [], calls)
        assert len(tracker.client.search_logged_models([tracker.experiment_id])) == 1
    assert len(tracker.children(result.run_id)) == 6
    for run in retrained:
        assert len(tracker.client.get_metric_history(run.info.run_id, "accuracy_long")) == 1
    report = make_report(mlflow_uri, "deltanas", "loop", reference=False)
    assert [(p.dataset, p.epoch, p.models) for p in report.proxy] == [("all", 2, 2), ("mnist", 2, 2)]


def test_duplicates_are_resampled_not_evaluated_and_a_resume_trains_nothing(
        curator_server, evaluator_server, scripted_generator, mlflow_uri, caplog) -> None:
    """The scripted LLM answers the same diff for every even seed: one parent never gets that program evaluated
    twice (in a cycle or across cycles); the search's reference is measured once, and a resumed search trains
    nothing at all (no candidate, no reference: the store holds them)."""
    cfg = SearchConfig(search_id="dedup", baseline_names=[MODEL], candidates=4, cycles=2, selection="evolve",
                       reference_seeds=2, resample_limit=1, train_limit=500, test_limit=200, eval_timeout_s=300)
    tracker = Tracker(mlflow_uri, "deltanas")
    endpoints = Endpoints(curator_server.address, scripted_generator, [evaluator_server.address])
    wider = deltadiff.code_fingerprint(deltadiff.answer_program(ANSWER, BASE, delta=True))
    with Services(endpoints) as services, caplog.at_level(logging.INFO, logger="deltanas.evaluator"):
        result = Search(cfg, services, tracker).run()
        evaluated = [r for r in result.results if r.status != "duplicate"]
        assert [r.code_key for r in evaluated].count(wider) == 1
        duplicates = [r for r in result.results if r.status == "duplicate"]
        assert duplicates and all(r.resamples == 1 and r.outcome == "duplicate" for r in duplicates)
        assert all("the same program as" in r.failure_reason for r in duplicates)
        # the re-sample round samples hotter than the first answers, so that it does not repeat them
        assert {round(r["temperature"], 2) for r in ScriptedLLM.requests} == {0.35, 0.65}
        assert len(result.results) == 8 and all(r.reference_accuracy is not None for r in result.results)
        for run in tracker.children(result.run_id):  # lineage as tags
            tags = run.data.tags
            assert tags["deltanas.root"] == MODEL and tags["deltanas.parent"] == run.data.params["baseline"]
            assert tags["deltanas.generation"] == ("1" if tags["deltanas.parent"] == MODEL else "2")
        references = tracker.client.search_runs([tracker.experiment_id], "tags.`deltanas.role` = 'reference'")
        assert MODEL in {r.data.tags["deltanas.program"] for r in references}

        caplog.clear()
        calls = len(ScriptedLLM.requests)
        again = Search(cfg, services, tracker).run()
        assert (again.skipped, again.results, len(ScriptedLLM.requests)) == (8, [], calls)
        trained = [m for m in caplog.messages if "training on" in m or "repeated request" in m]
        assert trained == []  # neither trained again nor even asked: the references came from the store
        assert len(tracker.client.search_runs([tracker.experiment_id], "tags.`deltanas.role` = 'reference'")) == \
            len(references)


def test_an_answer_whose_file_does_not_parse_is_asked_for_again(curator_server, evaluator_server, scripted_generator,
                                                                 mlflow_uri) -> None:
    """The generator drops an answer whose patched file does not parse and asks again (its parse_resamples): the
    syntax error costs no evaluation, and the count reaches the candidate's MLflow run."""
    ScriptedLLM.break_next = True
    cfg = SearchConfig(search_id="parse", baseline_names=[MODEL], candidates=2, cycles=1, reference_seeds=1,
                       train_limit=500, test_limit=200, eval_timeout_s=300)
    tracker = Tracker(mlflow_uri, "deltanas")
    with Services(Endpoints(curator_server.address, scripted_generator, [evaluator_server.address])) as services:
        result = Search(cfg, services, tracker).run()
    assert not ScriptedLLM.break_next and len(ScriptedLLM.requests) == 3  # two answers and the one asked again
    assert sorted(r.parse_resamples for r in result.results) == [0, 1]
    assert not any(r.failure_stage == "syntax" for r in result.results)  # the broken file was never evaluated
    metrics = {r.data.tags[CANDIDATE_TAG]: r.data.metrics for r in tracker.children(result.run_id)}
    assert sorted(m["parse_resamples"] for m in metrics.values()) == [0.0, 1.0]
