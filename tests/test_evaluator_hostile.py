"""Hostile candidates over real gRPC on loopback to real evaluators: one test per breach category of issue 12.

Two evaluators: `guarded` is the production configuration; `bare` has the Python guards (static checks,
audit hook) off, so that each payload reaches the kernel sandbox and shows that it holds on its own.
Every case must end blocked with a reason (INVALID at a named stage, INVALID_ARGUMENT naming the field, or
an attempt that fails inside the sandbox while the model trains normally), never INTERNAL and never with a
forged accuracy. After each case both services answer health SERVING and evaluate the benign baseline to
the same accuracy as at the start.

Where the host has no bubblewrap or seccomp the evaluators run with allow_weak_sandbox (KERNEL is False)
and the cases that need the kernel layers are skipped, saying so.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deltanas.testing.candidates import TINY_MODEL, with_hook
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.executors.local import check_host_sandbox
from evaluator_svc.isolation import SandboxUnavailable, missing_layers, probe
from evaluator_svc.job import SandboxLimits
from evaluator_svc.service import SERVICE_NAME, build_server

KERNEL = not missing_layers()
needs_kernel = pytest.mark.skipif(not KERNEL, reason=f"kernel sandbox unavailable: {missing_layers()}")
INVALID, VALID = evaluator_pb2.CANDIDATE_STATUS_INVALID, evaluator_pb2.CANDIDATE_STATUS_VALID
TEST_LIMIT = 100
LEAK = "LEAKED"  # a payload that gets through raises RuntimeError(LEAK ...), failing the candidate


class Evaluator:
    """One in-process evaluator server and a stub on it, with its baseline accuracy."""

    def __init__(self, **config) -> None:
        self.server = build_server(EvaluatorConfig(port=0, slots=1, max_epochs=1, default_timeout_s=60,
                                                   allow_weak_sandbox=not KERNEL, **config)).start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = evaluator_pb2_grpc.EvaluatorServiceStub(self.channel)
        self.baseline = self.evaluate(TINY_MODEL).accuracy

    def evaluate(self, code: str, **fields) -> evaluator_pb2.EvaluateResponse:
        request = {"request_id": uuid.uuid4().hex, "candidate_id": "hostile", "code": code, "dataset": "digits",
                   "hyperparameters": {"lr": 0.05, "momentum": 0.9}, "batch": 32, "transform": "norm",
                   "epochs": 1, "train_limit": 300, "test_limit": TEST_LIMIT, "timeout_s": 60, **fields}
        return self.stub.Evaluate(evaluator_pb2.EvaluateRequest(**request), timeout=120)

    def assert_healthy(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reply = self.evaluate(TINY_MODEL)
        assert reply.status == VALID and reply.accuracy == self.baseline, (reply.failure_reason, self.baseline)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)


@pytest.fixture(scope="module")
def evaluators() -> Iterator[dict[str, Evaluator]]:
    started = {"guarded": Evaluator(), "bare": Evaluator(sandbox=SandboxLimits(python_guards=False))}
    assert started["guarded"].baseline > 0.5 and started["guarded"].baseline == started["bare"].baseline
    yield started
    for evaluator in started.values():
        evaluator.close()


@pytest.fixture()
def guarded(evaluators) -> Iterator[Evaluator]:
    yield evaluators["guarded"]
    evaluators["guarded"].assert_healthy()


@pytest.fixture()
def bare(evaluators) -> Iterator[Evaluator]:
    yield evaluators["bare"]
    evaluators["bare"].assert_healthy()


def assert_invalid(reply: evaluator_pb2.EvaluateResponse, stage: str, fragment: str) -> None:
    assert reply.status == INVALID, (reply.accuracy, reply.logs[-2000:])
    assert evaluator_pb2.FailureStage.Name(reply.failure_stage) == f"FAILURE_STAGE_{stage}", reply.failure_reason
    assert fragment in reply.failure_reason, reply.failure_reason


def assert_contained(reply: evaluator_pb2.EvaluateResponse) -> None:
    """The payload's attempts all failed inside the sandbox, and the model then trained normally."""
    assert LEAK not in reply.failure_reason and LEAK not in reply.logs, reply.failure_reason
    assert reply.status == VALID, (reply.failure_reason, reply.logs[-2000:])


UNTRAINED = TINY_MODEL.replace("            self.optimizer.step()", "            pass")


def untrained(body: str) -> str:
    """A model that never learns, with `body` at the end of __init__."""
    return UNTRAINED.replace("        # HOOK", textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8))


FORGERIES = {
    "frames": """
        import sys
        frame, found = sys._getframe(), []
        while frame is not None:  # look for a key, labels or the scorer up the stack
            found += [v for v in frame.f_locals.values() if isinstance(v, (bytes, torch.Tensor))]
            frame = frame.f_back
        for fd in range(3, 32):
            try:
                os.write(fd, b'{"failure": null, "metrics": {}, "predictions": 0}\\n')
            except OSError:
                pass
    """,
    "sys.modules": """
        import sys
        sys.modules["json"].dumps = lambda *a, **k: '{"valid": true, "accuracy": 0.9876}'
    """,
    "tensor dunders": """
        torch.Tensor.__eq__ = lambda a, b: torch.ones(a.shape, dtype=torch.bool)
        torch.Tensor.__int__ = lambda self: 4938271
        torch.Tensor.sum = lambda self, *a, **k: torch.tensor(10 ** 6)
    """,
    "labels in memory": """
        import gc
        wanted = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.dtype == torch.int64
                  and o.dim() == 1 and len(o) == N_TEST]
        self.register_buffer("answers", wanted[0].clone() if wanted else torch.zeros(N_TEST, dtype=torch.int64))
    """.replace("N_TEST", str(TEST_LIMIT)),
    "patched scorer": """
        import sys
        scoring = sys.modules["evaluator_svc.scoring"]
        scoring.WorkerReport.encode = lambda self: b'{"failure": null, "metrics": {}, "predictions": 1}\\n' + bytes(8)
    """,
}


@needs_kernel
def test_forged_accuracy_is_computed_by_the_parent_anyway(bare, guarded) -> None:
    for name, body in FORGERIES.items():
        for evaluator in (bare, guarded):
            reply = evaluator.evaluate(untrained(body))
            assert reply.status != VALID or reply.accuracy < 0.5, (name, reply.accuracy)
            assert reply.status == VALID or (reply.failure_stage and reply.failure_reason), name


MALFORMED = {
    "class index outside": "torch.Tensor.argmax = lambda self, *a, **k: torch.full((len(self),), 10 ** 9)",
    "non-finite": "import sys\nsys.modules['evaluator_svc.scoring'].WorkerReport.encode = lambda self: "
                  "b'{\"failure\": null, \"metrics\": {\"num_params\": NaN}, \"predictions\": 100}\\n' + bytes(800)",
    "not JSON": "import sys\nsys.modules['evaluator_svc.scoring'].WorkerReport.encode = lambda self: "
                "b'[' * 60000 + b'\\n'",
    "header too long": "import sys\nsys.modules['evaluator_svc.scoring'].WorkerReport.encode = lambda self: "
                       "bytes(10 ** 7)",
}


@needs_kernel
def test_out_of_range_or_malformed_results_are_invalid_at_evaluate(bare) -> None:
    for fragment, body in MALFORMED.items():
        assert_invalid(bare.evaluate(untrained(body)), "EVALUATE", fragment)


def _secret(tmp_path: Path) -> Path:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    secret = private / "secret.txt"
    secret.write_text("s3cr3t")
    secret.chmod(0o600)
    return secret


@needs_kernel
def test_c_level_file_reads_see_nothing_of_the_host(bare, guarded, tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    other = tempfile.mkdtemp(prefix="deltanas-eval-")  # as if another candidate ran now
    sources = Path(__file__).resolve().parents[1] / "evaluator_svc" / "service.py"
    code = with_hook(f"""
        import ctypes
        libc = ctypes.CDLL(None)
        for path in ("/etc/shadow", {str(secret)!r}, {str(sources)!r}):
            fd = libc.open(path.encode(), 0)
            if fd >= 0 and libc.read(fd, ctypes.create_string_buffer(16), 16) > 0:
                raise RuntimeError("{LEAK} by libc: " + path)
            try:
                data = torch.from_file(path, size=4, dtype=torch.uint8)
                raise RuntimeError("{LEAK} by torch.from_file: " + path + repr(data))
            except RuntimeError as exc:
                if "{LEAK}" in str(exc):
                    raise
        import sys
        view = {{p.split("/")[2] for p in (sys.prefix, sys.base_prefix) if p.startswith("/root/")}}
        if set(os.listdir("/root") if os.path.isdir("/root") else []) - view:  # only the interpreter's path
            raise RuntimeError("{LEAK}: listed /root " + repr(os.listdir("/root")))
        others = [n for n in os.listdir("/tmp") if n.startswith("deltanas-eval-") and n not in os.getcwd()]
        if others:
            raise RuntimeError("{LEAK}: other scratch dirs " + repr(others))
    """)
    try:
        assert_contained(bare.evaluate(code))
    finally:
        os.rmdir(other)
    assert_invalid(guarded.evaluate(code), "SAFETY", "ctypes")


@needs_kernel
def test_writes_to_tmp_and_dev_shm_stay_in_the_sandbox(bare, guarded) -> None:
    name = f"deltanas-hostile-{uuid.uuid4().hex}"
    code = with_hook(f"""
        import ctypes
        torch.save(torch.zeros(1), "/tmp/{name}")
        torch.save(torch.zeros(1), "/dev/shm/{name}")
        libc = ctypes.CDLL(None)
        libc.close(libc.open(b"/tmp/{name}.libc", 0o101, 0o644))  # O_WRONLY | O_CREAT
    """)
    assert_contained(bare.evaluate(code))
    assert not any(Path(d, n).exists() for d in ("/tmp", "/dev/shm") for n in (name, f"{name}.libc"))
    assert_invalid(guarded.evaluate(code), "SAFETY", "ctypes")


@needs_kernel
def test_a_unix_socket_on_the_host_is_unreachable(bare, guarded, tmp_path: Path) -> None:
    path = tmp_path / "host.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(0.5)
        code = with_hook(f"""
            import socket
            try:
                socket.socket(socket.AF_UNIX).connect({str(path)!r})
            except OSError:
                pass
            else:
                raise RuntimeError("{LEAK}: connected")
        """)
        assert_contained(bare.evaluate(code))
        with pytest.raises(TimeoutError):
            server.accept()
    assert_invalid(guarded.evaluate(code), "SAFETY", "socket")


def test_static_check_bypasses_fail_at_safety(guarded) -> None:
    for line, fragment in [
        ("f = (lambda m: m)(torch).load", "not as a value"),
        ("f = torch.os", "module 'os'"),
        ("f = torch.ctypes.CDLL", "module 'ctypes'"),
        ("import traceback\nf = traceback.sys.modules", "module 'sys'"),
        ("g = getattr\nf = g(torch, 'lo' + 'ad')", "getattr may only be called"),
        ("f = getattr(torch.nn, 'fun' + 'ctional')", "computed name"),
    ]:
        assert_invalid(guarded.evaluate(with_hook(line)), "SAFETY", fragment)


def test_deeply_nested_code_fails_at_syntax(guarded) -> None:
    for line in ["x = " + " + ".join(["1"] * 1000), "x = self" + ".a" * 400]:
        assert_invalid(guarded.evaluate(with_hook(line)), "SYNTAX", "nested too deeply")


def test_unbounded_or_control_character_ids_are_invalid_argument(guarded) -> None:
    for fields in ({"request_id": "r" * 1_000_000}, {"request_id": "retry\n1"},
                   {"candidate_id": "c1\nINFO forged log line"}, {"candidate_id": "c1\x1b[2J"},
                   {"candidate_id": "c" * 129}):
        with pytest.raises(grpc.RpcError) as err:
            guarded.evaluate(TINY_MODEL, **fields)
        field = next(iter(fields))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}:"), err.value.details()


def test_control_characters_of_a_failure_are_escaped_in_the_logs(guarded, caplog) -> None:
    code = with_hook('raise RuntimeError("boom \\x1b[2J\\x07 done")')
    with caplog.at_level(logging.INFO, logger="evaluator_svc.service"):
        reply = guarded.evaluate(code)
    assert_invalid(reply, "INSTANTIATE", "boom")
    lines = [r.getMessage() for r in caplog.records if "boom" in r.getMessage()]
    assert lines and all("\x1b" not in line and "\\x1b[2J" in line for line in lines), lines


def test_capacity_names_the_active_sandbox_layers(guarded) -> None:
    layers = list(guarded.stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=10).sandbox_layers)
    if KERNEL:
        assert {"bubblewrap", "seccomp", "net-ns", "no-capabilities", "audit-hook"} <= set(layers)
    else:
        assert "weak-mode" in layers


def test_the_service_refuses_to_start_without_the_kernel_sandbox_unless_allowed(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # a host without bwrap
    probe.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap: bwrap not found"):
            build_server(EvaluatorConfig(port=0))
        assert "weak-mode" in check_host_sandbox(True, SandboxLimits())
    finally:
        monkeypatch.undo()
        probe.cache_clear()

