"""Tracking through an MLflow outage: a real `mlflow server` stopped and restarted while candidates are logged.

    .venv/bin/python -m pytest -q tests/test_tracking_journal.py
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.records import ReferenceRecord
from client.tracking import CandidateRecord, Tracker
from deltanas.vocabulary import CANDIDATE_TAG, CODE_FILE, RAW_OUTPUT_FILE, REFERENCE_TAG, ROLE_TAG

pytestmark = pytest.mark.slow

MLFLOW = Path(sys.executable).with_name("mlflow")


class MlflowServer:
    """`mlflow server` over a sqlite store on 127.0.0.1; stop() kills its process group, start() reuses the port."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root = root
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        with open(self.root / "server.log", "a") as errors:
            self.proc = subprocess.Popen(
                [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not start:\n{(self.root / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a down server fails each call at once
    srv = MlflowServer(tmp_path).start()
    yield srv
    srv.stop()


def record(cid: str) -> CandidateRecord:
    return CandidateRecord(cid, {"index": cid[-1]}, {"accuracy": 0.5}, {"status": "valid"},
                           {RAW_OUTPUT_FILE: f"answer of {cid}"})


def test_outage_is_journaled_then_synced_without_duplicates(server, tmp_path, caplog) -> None:
    tracker = Tracker(server.uri, "outage", journal_dir=tmp_path / "journal", retry_s=0)
    run_id = tracker.start_search("s-outage", {"candidates": 5}, {})
    for cid in ("c0", "c1"):
        tracker.log_candidate(run_id, "s-outage", record(cid))

    server.stop()
    with caplog.at_level(logging.WARNING, logger="deltanas.tracking"):
        for cid in ("c2", "c3"):
            assert tracker.log_candidate(run_id, "s-outage", record(cid)) is None
        tracker.update_candidate("c1", {"accuracy_long": 0.75}, {"long_epochs": 5})
        tracker.finish(run_id, "KILLED")  # the search ends during the outage
    journal = tracker.journal.path
    waiting = journal.read_text().splitlines()
    assert [json.loads(line)["op"] for line in waiting] == ["candidate", "candidate", "update", "finish"]
    assert f"journaled to {journal} (3 record(s) waiting" in caplog.text
    assert f"4 record(s) wait in {journal}" in caplog.text
    assert tracker.is_logged("c2") and tracker.is_logged("c3")

    server.start()
    tracker.log_candidate(run_id, "s-outage", record("c4"))  # the next write syncs the journal first
    assert not journal.exists()
    journal.write_text(waiting[0] + "\n")  # as if a crash came between replaying c2 and removing the journal

    resumed = Tracker(server.uri, "outage", journal_dir=tmp_path / "journal", retry_s=0)
    assert resumed.start_search("s-outage", {}, {}) == run_id  # resuming syncs the journal
    assert not journal.exists() and all(resumed.is_logged(f"c{i}") for i in range(5))
    resumed.finish(run_id)

    children = resumed.children(run_id)
    assert sorted(c.data.tags[CANDIDATE_TAG] for c in children) == ["c0", "c1", "c2", "c3", "c4"]
    by_id = {c.data.tags[CANDIDATE_TAG]: c for c in children}
    assert by_id["c1"].data.metrics["accuracy_long"] == 0.75 and by_id["c1"].data.params["long_epochs"] == "5"
    resumed.client.download_artifacts(by_id["c3"].info.run_id, RAW_OUTPUT_FILE, str(tmp_path))
    assert (tmp_path / RAW_OUTPUT_FILE).read_text() == "answer of c3"
    assert resumed.client.get_run(run_id).info.status == "FINISHED"


def test_references_and_tags_written_in_an_outage_are_found_and_synced_once(server, tmp_path) -> None:
    """A same-budget reference measured while the store is down is journaled, found again by its key (a search
    goes on judging against it), and becomes one reference run when the store is back; a tag set meanwhile reads
    back at once."""
    tracker = Tracker(server.uri, "outage", journal_dir=tmp_path / "journal", retry_s=0)
    run_id = tracker.start_search("s-refs", {}, {})
    server.stop()
    reference = ReferenceRecord("key-1", "reference-tiny", {"seeds": 3}, {"accuracy_mean": 0.4},
                                {"deltanas.program": "tiny"}, {CODE_FILE: "x = 1\n"})
    tracker.log_reference(reference)
    tracker.set_tags(run_id, {"deltanas.skipped_baselines": '["b: at chance"]'})
    assert tracker.run_tags(run_id)["deltanas.skipped_baselines"] == '["b: at chance"]'
    tracker.finish(run_id)  # the process ends with the records in the journal

    server.start()
    again = Tracker(server.uri, "outage", journal_dir=tmp_path / "journal", retry_s=0)  # the next process
    assert again.journal.pending() and again.find_reference("key-1").metrics == {"accuracy_mean": 0.4}
    again.log_reference(reference)  # idempotent by key
    assert again.sync()
    runs = again.client.search_runs([again.experiment_id], f"tags.`{ROLE_TAG}` = 'reference'")
    assert [r.data.tags[REFERENCE_TAG] for r in runs] == ["key-1"] and runs[0].data.metrics["accuracy_mean"] == 0.4
    third = Tracker(server.uri, "outage", journal_dir=tmp_path / "journal", retry_s=0)
    assert third.find_reference("key-1").name == "reference-tiny"  # now from the store
    assert third.run_tags(run_id)["deltanas.skipped_baselines"] == '["b: at chance"]'
