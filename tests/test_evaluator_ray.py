"""The evaluator's Ray executor on a real local Ray cluster (`ray start --head`, 2 CPUs, token auth).

    .venv/bin/python -m pytest -q tests/test_evaluator_ray.py        # the cluster tests are slow; -m "not slow"
                                                                     # runs the configuration ones

Candidates run as Ray tasks in the same bubblewrap sandbox as on a local evaluator; a Ray worker SIGKILLed
mid-candidate makes Ray re-run the candidate, and the gRPC call still answers once.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from client.channels import Endpoints, Services, open_channel
from client.config import SearchConfig
from client.search import Search
from client.tracking import Tracker
from deltanas.config import ConfigError
from deltanas.testing.candidates import BASE, MODEL, candidates, request
from deltanas.testing.processes import EvaluatorProcess, RayCluster, eventually
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import CANDIDATE_TAG
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.executors.options import RayOptions
from evaluator_svc.executors.registry import make_executor
from evaluator_svc.isolation import missing_layers

TASK = "run_candidate"  # the Ray task's function name: its worker's process title is ray::run_candidate


@pytest.fixture(scope="module")
def ray_evaluator() -> Iterator[tuple[RayCluster, EvaluatorProcess]]:
    """A 2-CPU Ray cluster and one `python -m evaluator_svc --executor ray` joined to it (1 CPU per candidate)."""
    with RayCluster(cpus=2) as cluster:
        env = {**cluster.evaluator_env(), "DELTANAS_EVALUATOR_ALLOW_WEAK_SANDBOX": str(bool(missing_layers()))}
        with EvaluatorProcess(env=env) as evaluator:
            yield cluster, evaluator


def stub_of(evaluator: EvaluatorProcess) -> evaluator_pb2_grpc.EvaluatorServiceStub:
    return evaluator_pb2_grpc.EvaluatorServiceStub(open_channel(evaluator.address))


def children_of(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


@pytest.mark.slow
def test_capacity_comes_from_the_cluster_and_candidates_run_in_its_sandbox(ray_evaluator) -> None:
    _, evaluator = ray_evaluator
    stub = stub_of(evaluator)
    capacity = stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=30)
    assert capacity.slots == 2 and capacity.busy == 0 and capacity.device == "cpu"
    if not missing_layers():
        assert {"bubblewrap", "seccomp", "net-ns"} <= set(capacity.sandbox_layers)

    req = request(request_id=uuid.uuid4().hex, candidate_id="ray-one")
    reply = stub.Evaluate(req, timeout=300)
    assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID and reply.accuracy > 0.2, reply.failure_reason
    assert " via ray:" in reply.worker
    assert stub.Evaluate(req, timeout=60) == reply  # the same request id: the recorded answer, not a re-run



ESCAPE = """import os as _os, socket as _socket


def _escape(port):
    token = _os.environ.get("RAY_AUTH_TOKEN", "none")
    try:
        _socket.create_connection(("127.0.0.1", port), timeout=2)
        net = "connected"
    except OSError as exc:
        net = f"refused ({type(exc).__name__})"
    raise RuntimeError(f"escape: token={token} net={net}")
"""


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_layers()), reason=f"kernel sandbox unavailable: {missing_layers()}")
def test_on_a_ray_node_the_sandbox_alone_hides_the_cluster_token_and_network(ray_evaluator) -> None:
    cluster, _ = ray_evaluator
    init = re.search(r"\n( +)def __init__\(.*\n", BASE)
    code = ESCAPE + BASE[:init.end()] + f"{init.group(1)}    _escape({cluster.port})\n" + BASE[init.end():]
    req = request(request_id=uuid.uuid4().hex, candidate_id="ray-escape")
    req.code = code  # full mode (the oneof drops the diff)
    env = {**cluster.evaluator_env(), "DELTANAS_EVALUATOR_SANDBOX__PYTHON_GUARDS": "false"}
    with EvaluatorProcess(env=env) as bare:
        reply = stub_of(bare).Evaluate(req, timeout=300)
    assert reply.failure_stage == evaluator_pb2.FAILURE_STAGE_INSTANTIATE, reply.failure_reason
    assert "escape: token=none net=refused" in reply.failure_reason  # the candidate ran, and saw neither
    assert " via ray:" in reply.worker


@pytest.mark.slow
def test_a_ray_worker_killed_mid_candidate_loses_nothing(ray_evaluator) -> None:
    cluster, evaluator = ray_evaluator
    stub = stub_of(evaluator)
    batch = candidates(2, uuid.uuid4().hex[:8])
    victims: list[int] = []

    def kill_one_training_worker() -> None:
        def training() -> bool:  # a Ray worker that runs our task and already started its sandboxed child
            pids = [p for p in cluster.worker_pids(TASK) if children_of(p)]
            if pids:
                victims.append(pids[0])
            return bool(pids)
        eventually(training, timeout_s=240)
        os.kill(victims[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_training_worker)
    killer.start()
    with ThreadPoolExecutor(len(batch)) as pool:
        replies = list(pool.map(lambda r: stub.Evaluate(r, timeout=600), batch))
    killer.join()

    assert victims, "no Ray worker was seen training"
    assert [r.candidate_id for r in replies] == [r.candidate_id for r in batch]
    assert all(r.status == evaluator_pb2.CANDIDATE_STATUS_VALID for r in replies), [r.failure_reason for r in replies]
    assert all(f"/pid{victims[0]}" not in r.worker for r in replies)  # the killed worker's candidate re-ran elsewhere
    assert stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=30).busy == 0


@pytest.mark.slow
def test_a_search_through_the_ray_executor_records_one_child_run_per_candidate(
        ray_evaluator, curator_server, generator_server, mlflow_uri, tmp_path) -> None:
    _, evaluator = ray_evaluator
    with Services(Endpoints(curator_server.address, generator_server.address, [evaluator.address])) as svc:
        tracker = Tracker(mlflow_uri, "ray", journal_dir=tmp_path / "journal")
        cfg = SearchConfig(datasets=["mnist"], baseline_names=[MODEL], candidates=3, max_new_tokens=96,
                           train_limit=300, test_limit=200, eval_timeout_s=120, experiment="ray",
                           reference_seeds=1, skip_non_learning=False)  # its candidates run whatever it learns
        result = Search(cfg, svc, tracker).run()
    children = tracker.children(result.run_id)
    assert len(children) == cfg.candidates == len(result.results)
    assert len({child.data.tags[CANDIDATE_TAG] for child in children}) == cfg.candidates
    for child in children:  # whatever trained, trained on the cluster
        if child.data.tags["deltanas.status"] == "valid":
            assert " via ray:" in child.data.params["worker"]


def test_unknown_executor_and_bad_ray_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="executor: unknown 'slurm'; known: local, ray"):
        EvaluatorConfig(executor="slurm")
    with pytest.raises(ConfigError, match=r"ray\.cpus"):
        EvaluatorConfig(executor="ray", ray=RayOptions(cpus=0))
    with pytest.raises(ConfigError, match="device: the ray executor"):
        EvaluatorConfig(executor="ray", device="cuda")


def test_the_ray_executor_without_ray_installed_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a plain install: `import ray` fails
    monkeypatch.delitem(sys.modules, "evaluator_svc.executors.ray_tasks", raising=False)
    with pytest.raises(ConfigError, match=r"executor: 'ray' needs the 'ray' package.*deltanas\[evaluator,ray\]"):
        make_executor(EvaluatorConfig(executor="ray"))


def test_a_plain_evaluator_does_not_import_ray() -> None:
    import subprocess

    code = ("import sys; from evaluator_svc.config import EvaluatorConfig; from evaluator_svc.service import "
            "build_server; build_server(EvaluatorConfig(port=0, allow_weak_sandbox=True)); "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


