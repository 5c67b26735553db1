"""A search killed with SIGKILL mid-cycle continues with `--resume` and records every candidate exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from client.tracking import PARENT_TAG
from deltanas.testing.candidates import MODEL
from deltanas.vocabulary import CANDIDATE_TAG, SEARCH_TAG

pytestmark = pytest.mark.slow

SEARCH = "killed"
ROOT = Path(__file__).resolve().parents[1]


def _cli(uri: str, *extra: str, env: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "client.cli", "run", "--model", "smollm2-135m", "--tracking-uri", uri,
            "--baseline-names", MODEL, "--cycles", "2", "--candidates", "3", "--max-new-tokens", "32",
            "--train-limit", "500", "--test-limit", "200", "--reference-seeds", "2", *extra]
    # Its own process group: the kill takes its sandboxed evaluation workers down with it, like a crash.
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _runs(client: MlflowClient, query: str) -> list:
    experiment = client.get_experiment_by_name("deltanas")
    return client.search_runs([experiment.experiment_id], query) if experiment else []


def test_sigkilled_search_resumes_without_duplicates(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "DELTANAS_CURATOR_STATE_DIR": str(tmp_path / "curator")}
    client = MlflowClient(uri)
    first = _cli(uri, "--search-id", SEARCH, env=env)
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, generous for a loaded machine
        # A finished child run: one killed between create_run and set_terminated is redone, not skipped.
        while not _runs(client, f"tags.`{SEARCH_TAG}` = '{SEARCH}' and tags.`deltanas.role` = 'candidate' "
                                "and attributes.status = 'FINISHED'"):
            assert first.poll() is None, f"the search ended before it was killed:\n{first.stdout.read()}"
            assert time.monotonic() < deadline, "no candidate was logged in time"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    (parent,) = _runs(client, f"tags.`{SEARCH_TAG}` = '{SEARCH}' and tags.`deltanas.role` = 'search'")
    assert parent.info.status == "RUNNING"

    # Resumed from the recorded config alone: no search flags besides the id.
    second = subprocess.run([sys.executable, "-m", "client.cli", "run", "--model", "smollm2-135m",
                             "--tracking-uri", uri, "--resume", SEARCH], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already recorded (resumed)" in second.stdout

    (parent,) = _runs(client, f"tags.`{SEARCH_TAG}` = '{SEARCH}' and tags.`deltanas.role` = 'search'")
    assert parent.info.status == "FINISHED"
    children = _runs(client, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    assert [c.info.status for c in children] == ["FINISHED"] * 6
    ids = {c.data.tags[CANDIDATE_TAG] for c in children}
    assert len(ids) == 6
    assert {c.data.params["cycle"] for c in children} == {"0", "1"}
