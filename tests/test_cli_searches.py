"""`deltanas searches` and `deltanas report` on real MLflow stores: by search or run id, two side by side, JSON,
and the stores that are not there (a missing SQLite file, a server that does not answer) in one line each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from client.cli import main
from client.tracking import Tracker
from deltanas.testing.processes import free_port
from tests.support.records import EXPERIMENT, ROWS, candidate_record


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("searches")
    uri = f"sqlite:///{path / 'mlflow.db'}"
    tracker = Tracker(uri, EXPERIMENT, artifact_location=str(path / "artifacts"))
    ids = {"uri": uri}
    for search, rows in (("s-one", ROWS[:6]), ("s-two", ROWS[6:])):
        run_id = tracker.start_search(search, {"model": "smollm2-135m", "modes": ["delta"]}, {})
        for i, row in enumerate(rows):
            record = candidate_record(i, row)
            tracker.log_candidate(run_id, search, replace(record, candidate_id=f"{search}-{record.candidate_id}"))
        tracker.finish(run_id)
        ids[search] = run_id
    return ids


def test_searches_lists_each_search_with_its_valid_rate(two_searches: dict[str, str], capsys) -> None:
    assert main(["searches", "--tracking-uri", two_searches["uri"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["search", "started", "status"]
    one = next(line for line in out if line.startswith("s-one"))
    assert "FINISHED" in one and "smollm2-135m" in one and "67 %" in one and "0.9200" in one
    assert main(["searches", "--tracking-uri", two_searches["uri"], "--json"]) == 0
    rows = {r["search_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["s-two"]["candidates"] == 6 and rows["s-two"]["valid_rate"] == pytest.approx(2 / 6)
    assert rows["s-one"]["run_id"] == two_searches["s-one"]


def test_report_by_run_id_and_two_side_by_side(two_searches: dict[str, str], capsys) -> None:
    assert main(["report", two_searches["s-one"], "--tracking-uri", two_searches["uri"]]) == 0
    assert "s-one" in capsys.readouterr().out
    assert main(["report", "s-one", "s-two", "--tracking-uri", two_searches["uri"]]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["metric", "s-one", "s-two"]
    assert any(line.split()[:3] == ["delta_valid_rate", "0.6667", "-"] for line in table)
    assert main(["report", "s-one", "--json", "--tracking-uri", two_searches["uri"]]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["search_id"] == "s-one" and report["modes"][0]["candidates"] == 6


def test_a_store_that_is_not_there_is_one_line_and_is_not_created(tmp_path: Path, capsys, monkeypatch) -> None:
    missing = tmp_path / "nowhere.db"
    for command in (["searches"], ["report", "s-one"]):
        assert main([*command, "--tracking-uri", f"sqlite:///{missing}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"deltanas: error: tracking_uri: no MLflow store at {missing}") and err.count("\n") == 1
    assert not missing.exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    assert main(["searches"]) == 2
    err = capsys.readouterr().err
    assert "does not answer (ConnectionError)" in err and err.count("\n") == 1


def test_an_unknown_experiment_is_not_created(two_searches: dict[str, str], capsys) -> None:
    assert main(["searches", "--tracking-uri", two_searches["uri"], "--experiment", "other"]) == 2
    assert "experiment: no experiment 'other'" in capsys.readouterr().err
    assert main(["searches", "--tracking-uri", two_searches["uri"], "--experiment", "other"]) == 2
    capsys.readouterr()


def test_ui_serves_the_store_and_names_the_search_page(two_searches: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    server_log = (tmp_path / "ui.log").open("w")  # the MLflow server's own log, read if it does not come up
    proc = subprocess.Popen([sys.executable, "-m", "client.cli", "ui", two_searches["s-two"], "--port", str(port),
                             "--tracking-uri", two_searches["uri"]], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=server_log, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"MLflow UI: http://127.0.0.1:{port}/#/experiments/")
        assert f"/runs/{two_searches['s-two']}" in first  # a search id in, the parent run's page out
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    assert reply.read() == b"OK"
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()[-3000:]
                time.sleep(0.5)
        query = json.dumps({"experiment_ids": [first.split("/experiments/")[1].split("/")[0]]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", data=query,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            runs = json.loads(reply.read())["runs"]
        assert two_searches["s-two"] in {r["info"]["run_id"] for r in runs}  # the UI reads this very store
        # Ctrl-C on `deltanas ui` ends everything it started (MLflow's UI runs job-runner processes of its own).
        started = psutil.Process(proc.pid).children(recursive=True)
        assert started
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        _, alive = psutil.wait_procs(started, timeout=30)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        server_log.close()
