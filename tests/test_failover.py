"""Failover across evaluator workers: real worker processes on loopback, SIGKILLed and restarted mid-search.

    .venv/bin/python -m pytest -q tests/test_failover.py          # -m "not slow" runs only the quick ones
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait
from contextlib import contextmanager

import grpc
import pytest

from client.channels import Endpoints, Services, open_channel
from client.config import SearchConfig
from client.search import Search
from client.tracking import Tracker
from deltanas.evaluator_pool import EvaluatorPool, NoWorkerLeft
from deltanas.testing.candidates import MODEL, candidates, request
from deltanas.testing.processes import EvaluatorProcess, eventually, free_port
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import CANDIDATE_TAG

NOT_APPLYING = "```diff\n@@ -1,2 +1,2 @@\n-import numpy\n+import numpy as np\n x = 1\n```"  # fails fast at APPLY


@contextmanager
def pool_over(addresses: list[str], **kwargs) -> Iterator[EvaluatorPool]:
    channels = {a: open_channel(a) for a in addresses}
    pool = EvaluatorPool({a: evaluator_pb2_grpc.EvaluatorServiceStub(c) for a, c in channels.items()},
                         dict.fromkeys(addresses, 1), **{"deadline_s": 300, "probe_s": 0.2, "max_probe_s": 1.0,
                                                         **kwargs})
    try:
        yield pool
    finally:
        pool.close()
        for channel in channels.values():
            channel.close()


class Attempts:
    """Which worker each attempt of each candidate went to, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_candidate: dict[str, list[str]] = defaultdict(list)

    def recorder(self, cid: str) -> Callable[[str], None]:
        def record(address: str) -> None:
            with self._lock:
                self.by_candidate[cid].append(address)
        return record


@pytest.fixture()
def start_workers() -> Iterator[Callable[[int], list[EvaluatorProcess]]]:
    """Starts n evaluator processes at once; all are SIGKILLed at the end."""
    started: list[EvaluatorProcess] = []

    def start(n: int) -> list[EvaluatorProcess]:
        procs = [EvaluatorProcess() for _ in range(n)]
        started.extend(procs)
        with ThreadPoolExecutor(n) as starter:
            list(starter.map(EvaluatorProcess.start, procs))
        return procs

    yield start
    for proc in started:
        proc.kill()


@pytest.mark.slow
def test_killed_workers_lose_no_candidate_and_a_restarted_worker_is_used_again(start_workers) -> None:
    fleet = start_workers(3)
    a, b, c = fleet
    attempts = Attempts()
    with pool_over([p.address for p in fleet]) as pool:
        batch = candidates(6, uuid.uuid4().hex[:8])
        futures = {r.candidate_id: pool.submit(r, on_attempt=attempts.recorder(r.candidate_id)) for r in batch}
        for victim in (a, b):  # each SIGKILLed while it evaluates a candidate
            eventually(victim.kill_mid_candidate)
        b.start()  # b comes back on its old port; a stays dead
        replies = {cid: f.result(timeout=300) for cid, f in futures.items()}

        assert all(reply.candidate_id == cid for cid, reply in replies.items())
        assert all(reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID for reply in replies.values())
        moved = {cid for cid, tried in attempts.by_candidate.items() if len(tried) > 1}
        assert any(attempts.by_candidate[cid][0] == a.address for cid in moved), attempts.by_candidate
        assert any(attempts.by_candidate[cid][0] == b.address for cid in moved), attempts.by_candidate

        eventually(lambda: pool.workers()[b.address]["up"])
        assert not pool.workers()[a.address]["up"]
        more = candidates(2, uuid.uuid4().hex[:8])  # two free workers left: one candidate each
        later = {r.candidate_id: pool.submit(r, on_attempt=attempts.recorder(r.candidate_id)) for r in more}
        assert all(f.result(timeout=300).status == evaluator_pb2.CANDIDATE_STATUS_VALID for f in later.values())
        assert {attempts.by_candidate[cid][-1] for cid in later} == {b.address, c.address}


@pytest.mark.slow
def test_search_with_a_worker_killed_mid_call_logs_one_child_run_per_candidate(
        start_workers, curator_server, generator_server, mlflow_uri, tmp_path) -> None:
    a, b = start_workers(2)
    with Services(Endpoints(curator_server.address, generator_server.address, [a.address, b.address])) as svc:
        svc.evaluators[a.address] = KillOnFirstCall(svc.evaluators[a.address], a)
        tracker = Tracker(mlflow_uri, "failover", journal_dir=tmp_path / "journal")
        cfg = SearchConfig(datasets=["mnist"], baseline_names=[MODEL], candidates=3, max_new_tokens=32,
                           train_limit=500, test_limit=200, reference_seeds=2, eval_timeout_s=120,
                           experiment="failover")
        result = Search(cfg, svc, tracker).run()
    assert a.proc.poll() is not None  # the worker really died during the search
    children = tracker.children(result.run_id)
    assert len(children) == cfg.candidates == len(result.results)
    assert len({child.data.tags[CANDIDATE_TAG] for child in children}) == cfg.candidates


class KillOnFirstCall:
    """The real stub of a worker process; its first Evaluate call is sent, then the process is SIGKILLed."""

    def __init__(self, stub: evaluator_pb2_grpc.EvaluatorServiceStub, proc: EvaluatorProcess) -> None:
        self.GetCapacity = stub.GetCapacity
        self.Evaluate = self
        self._evaluate = stub.Evaluate
        self._proc = proc

    def future(self, req: evaluator_pb2.EvaluateRequest, **kwargs) -> grpc.Future:
        call = self._evaluate.future(req, **kwargs)
        self._proc.kill()
        return call


def test_bad_request_is_not_retried_and_a_dead_worker_is_skipped(evaluator_server) -> None:
    dead = f"127.0.0.1:{free_port()}"
    attempts = Attempts()
    with pool_over([dead, evaluator_server.address]) as pool:
        bad = pool.submit(request(request_id=uuid.uuid4().hex, dataset="imagenet-22k", candidate_id="bad"),
                          on_attempt=attempts.recorder("bad"))
        quick = [pool.submit(request(request_id=uuid.uuid4().hex, delta_answer=NOT_APPLYING, candidate_id=f"q{i}"),
                             on_attempt=attempts.recorder(f"q{i}")) for i in range(3)]
        wait([bad, *quick], timeout=120)
        with pytest.raises(grpc.RpcError) as failure:
            bad.result()
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.value.details().startswith("dataset")
        assert all(f.result().failure_stage == evaluator_pb2.FAILURE_STAGE_APPLY for f in quick)
        assert all(tried[-1] == evaluator_server.address for tried in attempts.by_candidate.values())
        assert pool.workers()[dead]["up"] is False and pool.workers()[evaluator_server.address]["up"] is True


def test_no_worker_left_fails_the_candidate_and_close_cancels_the_queue() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pool_over([dead], outage_s=0.5) as pool, pytest.raises(NoWorkerLeft, match="no evaluator worker answered"):
        pool.submit(request(request_id=uuid.uuid4().hex, candidate_id="lost")).result(timeout=60)
    with pool_over([dead]) as pool:
        queued = pool.submit(request(request_id=uuid.uuid4().hex, candidate_id="queued"))
        pool.close()
        with pytest.raises(CancelledError):
            queued.result(timeout=60)


def test_a_full_worker_refuses_and_the_candidate_waits_for_it(caplog) -> None:
    """A worker whose slot and queue are taken by another client's call answers RESOURCE_EXHAUSTED: the pool keeps
    the candidate (no attempt spent, the worker not marked down) and sends it again once the back-off passed."""
    from evaluator_svc.config import EvaluatorConfig
    from evaluator_svc.isolation import missing_layers
    from evaluator_svc.service import build_server

    server = build_server(EvaluatorConfig(port=0, slots=1, max_queue=0, default_timeout_s=300,
                                          allow_weak_sandbox=bool(missing_layers()))).start()
    other = open_channel(server.address)
    try:
        busy = evaluator_pb2_grpc.EvaluatorServiceStub(other).Evaluate.future(
            request(request_id="other-client", dataset="mnist", train_limit=6000, test_limit=500), timeout=600)
        with pool_over([server.address], max_attempts=1) as pool, caplog.at_level(logging.INFO,
                                                                                    "deltanas.evaluator_pool"):
            eventually(lambda: pool.workers()[server.address]["up"] and server_busy(server.address))
            reply = pool.submit(request(request_id="mine", candidate_id="mine")).result(timeout=600)
            assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, reply.failure_reason
            assert "is full (RESOURCE_EXHAUSTED)" in caplog.text and pool.workers()[server.address]["up"]
            assert busy.done()  # it got the slot only after the other client's call
    finally:
        other.close()
        server.stop(0)


def server_busy(address: str) -> bool:
    channel = open_channel(address)
    try:
        reply = evaluator_pb2_grpc.EvaluatorServiceStub(channel).GetCapacity(evaluator_pb2.GetCapacityRequest(),
                                                                              timeout=10)
        return reply.busy == reply.slots
    finally:
        channel.close()
