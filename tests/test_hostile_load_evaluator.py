"""Hostile load on the evaluator (issue 22), over real gRPC on loopback and the real sandbox.

Class 1 (caps): a thread bomb, shared memory, tmpfs, memfd, scratch bytes and a 3000-deep tree; class 2 (files and
figures the worker controls): a FIFO in place of the stage file, forged metrics; class 3: guard bypasses; class 4:
a flood, calls cancelled while queued or running, a deadline, the result cache's bytes; class 5: bytes that do not
parse, a dataset missing from its root. After each hostile candidate no process, cgroup or scratch dir of it is
left. `bare` evaluators have the Python guards off, so that each payload meets the kernel layers alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deltanas.testing.candidates import TINY_MODEL as MODEL
from deltanas.testing.candidates import with_hook
from deltanas.testing.processes import eventually
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from evaluator_svc.cgroups import cgroup_host
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.isolation import describe_caps, host_layers, missing_layers
from evaluator_svc.job import SandboxLimits
from evaluator_svc.results import EvalResult, Stage
from evaluator_svc.service import build_server
from tests.support.evaluation import evaluate

KERNEL = not missing_layers()
needs_kernel = pytest.mark.skipif(not KERNEL, reason=f"kernel sandbox unavailable: {missing_layers()}")
CGROUP = cgroup_host("auto")
needs_cgroup = pytest.mark.skipif(not CGROUP.layer, reason=f"no per-candidate cgroup here: {CGROUP.why}")
INVALID, VALID = evaluator_pb2.CANDIDATE_STATUS_INVALID, evaluator_pb2.CANDIDATE_STATUS_VALID
LEAK = "LEAKED"
BLOCKING = with_hook("import time\nwhile True:\n    time.sleep(0.05)")  # runs until killed


def request(code: str, **fields) -> evaluator_pb2.EvaluateRequest:
    values = {"request_id": uuid.uuid4().hex, "candidate_id": "hostile", "code": code, "dataset": "digits",
              "hyperparameters": {"lr": 0.05, "momentum": 0.9}, "batch": 32, "transform": "norm", "epochs": 1,
              "train_limit": 300, "test_limit": 100, "timeout_s": 120, **fields}
    return evaluator_pb2.EvaluateRequest(**values)


def descendants() -> set[int]:
    """Live processes started (directly or not) by this test process: sandboxed workers included."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def job_cgroups() -> list[Path]:
    return [d for parent in CGROUP.parents for d in parent.glob(f"deltanas-job-{os.getpid()}-*")]


def assert_nothing_left(scratch_root: Path | None = None) -> None:
    """No worker process, job cgroup or scratch dir of a finished candidate is left."""
    assert eventually(lambda: not any(b"evaluator_svc.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
                                      for pid in descendants() if Path(f"/proc/{pid}").exists())), descendants()
    assert job_cgroups() == []
    if scratch_root is not None:
        assert list(scratch_root.iterdir()) == []


class Evaluator:
    def __init__(self, **config) -> None:
        self.server = build_server(EvaluatorConfig(port=0, max_epochs=1, default_timeout_s=120,
                                                   allow_weak_sandbox=not KERNEL, **config)).start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = evaluator_pb2_grpc.EvaluatorServiceStub(self.channel)

    def evaluate(self, code: str, timeout: float = 300, **fields) -> evaluator_pb2.EvaluateResponse:
        return self.stub.Evaluate(request(code, **fields), timeout=timeout)

    def busy(self) -> int:
        return self.stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=30).busy

    def healthy(self) -> bool:
        reply = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)


@pytest.fixture(scope="module")
def bare() -> Iterator[Evaluator]:
    evaluator = Evaluator(slots=1, sandbox=SandboxLimits(python_guards=False))
    yield evaluator
    evaluator.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[Evaluator]:
    evaluator = Evaluator(slots=1, max_queue=4)
    yield evaluator
    evaluator.close()


def run(code: str, tmp_path: Path, **limits) -> EvalResult:
    """The candidate in the sandbox with the Python guards off, scratch dirs under `tmp_path`."""
    limits = {"python_guards": False, "threads": 1, "scratch_root": str(tmp_path), **limits}
    return evaluate(code, dataset="digits", prm={"lr": 0.05, "momentum": 0.9}, batch=32, transform="norm",
                    train_limit=200, test_limit=100, timeout_s=120, static_checks=False,
                    limits=SandboxLimits(**limits), candidate_id="hostile")


def assert_failed(result: EvalResult, stage: Stage, fragment: str) -> None:
    assert not result.valid and result.failure_stage is stage, (result.failure_stage, result.failure_reason)
    assert fragment in result.failure_reason, result.failure_reason


# ------------------------------------------------------------------------------------ class 1: resource caps

THREAD_BOMB = with_hook("""
    import threading, time
    threading.stack_size(65536)
    for _ in range(100_000):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
""")


def test_a_thread_bomb_meets_the_pids_cap_of_its_layer(tmp_path: Path) -> None:
    limits = SandboxLimits()
    if "pids-cap" not in host_layers(limits):
        pytest.skip(f"this host caps no thread count: {describe_caps(limits)}")
    before = len(descendants())
    assert_failed(run(THREAD_BOMB, tmp_path), Stage.INSTANTIATE, "process or resource limit reached")
    assert_nothing_left(tmp_path)
    assert len(descendants()) <= before


def test_the_layers_and_the_start_up_log_say_which_cap_holds(caplog: pytest.LogCaptureFixture) -> None:
    cgroup, fallback = SandboxLimits(), SandboxLimits(cgroup="none")
    if CGROUP.layer:
        assert {CGROUP.layer, "pids-cap", "memory-cap"} <= set(host_layers(cgroup))
        assert "pids.max 64" in describe_caps(cgroup)
    assert "memory-cap" not in host_layers(fallback)
    nproc_counts = os.geteuid() != 0 if KERNEL else os.geteuid() == 0  # not root-mapped / a fresh uid per job
    assert ("pids-cap" in host_layers(fallback)) == nproc_counts
    assert "memfd and SysV shm refused" in describe_caps(fallback)
    with caplog.at_level(logging.INFO, logger="evaluator_svc"):
        Evaluator(slots=1).close()
    assert any("per-candidate caps:" in r.getMessage() for r in caplog.records)


FILLS = with_hook(f"""
    import errno
    try:
        os.memfd_create("hold")
        raise RuntimeError("{LEAK}: memfd_create")
    except PermissionError:
        pass
    for name in ("/dev/shm/fill", "/tmp/fill", "fill"):
        try:
            for part in range(64):  # up to 2 GiB in 32 MiB files (each below the file size limit)
                with open(f"{{name}}{{part}}", "wb") as fh:
                    for _ in range(4):
                        fh.write(bytes(8 << 20))
            raise RuntimeError("{LEAK}: 2 GiB in " + name)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
""")


@needs_kernel
def test_shared_memory_tmpfs_scratch_and_memfd_are_capped(bare: Evaluator) -> None:
    reply = bare.evaluate(FILLS)
    assert reply.status == VALID and LEAK not in reply.failure_reason, (reply.failure_reason, reply.logs[-2000:])
    assert_nothing_left()


@needs_kernel
@needs_cgroup
def test_the_cgroup_counts_shared_memory_against_the_memory_limit(tmp_path: Path) -> None:
    fill = with_hook("""
        for part in range(96):  # 3 GiB of /dev/shm against a 1.5 GiB limit
            with open(f"/dev/shm/hold{part}", "wb") as fh:
                for _ in range(4):
                    fh.write(bytes(8 << 20))
    """)
    result = run(fill, tmp_path, memory_mb=512, runtime_mb=1024, tmp_mb=4096)
    assert_failed(result, Stage.INSTANTIATE, "memory limit exceeded (cgroup: 1536 MB")
    assert_nothing_left(tmp_path)


DEEP_TREE = with_hook("""
    here = os.getcwd()
    for _ in range(3000):
        os.mkdir("d")
        os.chdir("d")
    os.symlink("/etc", "out")
    os.chdir(here)
""")


@pytest.mark.parametrize("kernel_sandbox", [True, False])
def test_a_3000_deep_tree_in_scratch_is_removed(tmp_path: Path, kernel_sandbox: bool) -> None:
    result = run(DEEP_TREE, tmp_path, kernel_sandbox=kernel_sandbox)
    assert result.valid, result.failure_reason
    assert_nothing_left(tmp_path)
    assert Path("/etc/passwd").exists()  # the link was removed, not followed


# --------------------------------------------------------------------- class 2: what the worker controls

def test_a_fifo_in_place_of_the_stage_file_cannot_block_the_parent(tmp_path: Path) -> None:
    code = with_hook("""
        for name in ("stage", "stdout.log"):
            os.unlink(os.path.join("..", name))
            os.mkfifo(os.path.join("..", name))
        os._exit(3)
    """)
    results: list[EvalResult] = []
    runner = threading.Thread(target=lambda: results.append(run(code, tmp_path, kernel_sandbox=False)), daemon=True)
    runner.start()
    runner.join(timeout=300)
    assert not runner.is_alive(), "the parent blocked on a file the worker replaced"
    assert_failed(results[0], Stage.INSTANTIATE, "worker exited with status 3")
    assert_nothing_left(tmp_path)


def test_the_workers_own_figures_are_marked_unverified(guarded: Evaluator) -> None:
    reply = guarded.evaluate(with_hook("torch.Tensor.numel = lambda self: 1"))
    metrics = dict(reply.metrics)
    assert metrics["unverified.num_params"] == 2.0 and "num_params" not in metrics, metrics  # 1 per tensor: forged
    assert metrics["test_samples"] == 100 and metrics["worker_wall_seconds"] > 0
    assert not {name for name in metrics if "." not in name} & {"train_seconds", "samples_per_second"}


# ------------------------------------------------------------------------------- class 3: guard bypasses

def test_computed_attribute_names_are_refused_off_self_and_for_dunders_on_self(guarded: Evaluator) -> None:
    reply = guarded.evaluate(with_hook("c = getattr(().__class__, '__ba' + 'se__')"))
    assert reply.status == INVALID and reply.failure_stage == evaluator_pb2.FAILURE_STAGE_SAFETY
    assert "computed name is allowed on self only" in reply.failure_reason
    reply = guarded.evaluate(with_hook("c = getattr(self, '__cla' + 'ss__')"))
    assert reply.status == INVALID and reply.failure_stage == evaluator_pb2.FAILURE_STAGE_INSTANTIATE
    assert "blocked by sandbox: getattr() of attribute '__class__'" in reply.failure_reason


def test_the_audit_hook_refuses_foreign_calls_through_ctypes(tmp_path: Path) -> None:
    for call in ("ctypes.pythonapi.Py_GetVersion()", "ctypes.string_at(id(self), 8)"):
        code = with_hook(f"import ctypes\n{call}")
        assert_failed(run(code, tmp_path, python_guards=True), Stage.INSTANTIATE, "native code through ctypes")


# ------------------------------------------------------------------------ class 4: admission, cancellation

def test_a_flood_is_refused_beyond_the_queue_while_health_and_capacity_answer(guarded: Evaluator) -> None:
    calls = [guarded.stub.Evaluate.future(request(BLOCKING, candidate_id=f"flood-{i}"), timeout=600)
             for i in range(2000)]
    try:
        assert guarded.healthy()
        assert guarded.stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=30).slots == 1
        assert eventually(lambda: sum(c.done() for c in calls) >= 2000 - 5)
        refused = [c for c in calls if c.done() and c.exception() is not None]
        assert len(refused) == 2000 - 5  # one running, four waiting for the slot
        assert {c.exception().code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert refused[0].exception().details().startswith("Evaluate: the evaluator has 5 calls admitted")
    finally:
        for call in calls:
            call.cancel()
    assert eventually(lambda: guarded.busy() == 0)
    assert_nothing_left()
    assert guarded.evaluate(MODEL).status == VALID


def test_calls_cancelled_while_queued_never_start_and_a_running_one_is_killed(
        guarded: Evaluator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        running = guarded.stub.Evaluate.future(request(BLOCKING, candidate_id="running"), timeout=600)
        assert eventually(lambda: guarded.busy() == 1)
        queued = [guarded.stub.Evaluate.future(request(BLOCKING, candidate_id=f"queued-{i}"), timeout=600)
                  for i in range(3)]
        time.sleep(1)  # they are admitted and waiting for the slot
        for call in queued:
            call.cancel()
        running.cancel()
        assert eventually(lambda: guarded.busy() == 0)
        assert_nothing_left()
    messages = [r.getMessage() for r in caplog.records]
    killed = {m.split(":")[0] for m in messages if "the caller cancelled, killing process group" in m}
    assert killed == {"candidate running"}, killed  # the queued calls had no worker to kill
    assert sum("while it waited for a slot" in m for m in messages) == 3, messages


def test_a_passed_deadline_stops_the_candidate(guarded: Evaluator) -> None:
    with pytest.raises(grpc.RpcError) as err:
        guarded.evaluate(BLOCKING, timeout=15)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert eventually(lambda: guarded.busy() == 0)
    assert_nothing_left()


def test_the_result_cache_is_bounded_in_bytes() -> None:
    evaluator = Evaluator(slots=1, results_cache_mb=1)
    try:
        big = "# " + "x" * 400_000 + "\nx = 1\n"  # fails at CONTRACT at once; the reply echoes the code
        first, _second, third = (evaluator.stub.Evaluate(request(big, request_id=f"big-{i}"), timeout=60)
                                for i in range(3))
        assert first.failure_stage == evaluator_pb2.FAILURE_STAGE_CONTRACT and len(first.patched_code) > 400_000
        assert evaluator.stub.Evaluate(request(big, request_id="big-2"), timeout=60) == third  # remembered
        assert evaluator.stub.Evaluate(request(big, request_id="big-0"), timeout=60) != first  # evaluated again
    finally:
        evaluator.close()


# -------------------------------------------------------------------------------- class 5: bad input

@pytest.mark.parametrize(("data", "field"), [
    (b"\x0a\x04\xff\xfe\xfd\xfc", "request_id"),  # invalid UTF-8 in a string field
    (b"\x12\x10hostile", "candidate_id"),  # length runs past the end
    (b"\x3a\x04\x0a\x02\xff\xfe", "hyperparameters.key"),  # a map key that is not UTF-8
    (b"\xff\xff\xff", "request"),
])
def test_bytes_that_do_not_parse_are_invalid_argument_naming_the_field(evaluator_server, data: bytes,
                                                                       field: str) -> None:
    with grpc.insecure_channel(evaluator_server.address) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/deltanas.v1.EvaluatorService/Evaluate")(data, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}"), err.value.details()


def test_a_dataset_missing_from_an_existing_root_is_a_failed_precondition(tmp_path: Path) -> None:
    evaluator = Evaluator(slots=1, data_root=tmp_path)
    try:
        with pytest.raises(grpc.RpcError) as err:
            evaluator.evaluate(MODEL, dataset="cifar-10", transform="norm")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details().startswith("dataset: CIFAR10 not found under the dataset root"), \
            err.value.details()
        assert evaluator.healthy()
    finally:
        evaluator.close()
