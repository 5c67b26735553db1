"""Real services on loopback for the tests: each fixture starts one gRPC server in this process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deltanas.paths import HOME_ENV
from tests.support import TEST_MODEL

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(scope="module")
def deltanas_home(request: pytest.FixtureRequest) -> Iterator[Path]:
    """DELTANAS_HOME in pytest's cache for the requesting module: the SmolLM2 conversion is paid once per machine,
    not on every run."""
    path = Path(request.config.cache.mkdir("deltanas_home"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def evaluator_server() -> Iterator:
    from evaluator_svc.config import EvaluatorConfig
    from evaluator_svc.isolation import missing_layers
    from evaluator_svc.service import build_server

    # Weak mode only where the host has no bubblewrap/seccomp (the startup log then says which layer is missing).
    config = EvaluatorConfig(port=0, slots=2, max_epochs=3, default_timeout_s=120,
                             allow_weak_sandbox=bool(missing_layers()))
    server = build_server(config).start()
    yield server
    server.stop(0)


@pytest.fixture(scope="session")
def evaluator_pool(evaluator_server):
    """A real EvaluatorPool over the session's evaluator (2 slots)."""
    import grpc

    from deltanas.evaluator_pool import EvaluatorPool
    from deltanas.v1 import evaluator_pb2_grpc

    channel = grpc.insecure_channel(evaluator_server.address)
    real = EvaluatorPool({evaluator_server.address: evaluator_pb2_grpc.EvaluatorServiceStub(channel)},
                         {evaluator_server.address: 2}, deadline_s=300)
    yield real
    real.close()
    channel.close()


@pytest.fixture(scope="session")
def curator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from curator_svc.config import CuratorConfig
    from curator_svc.options import PairingConfig
    from curator_svc.service import build_server

    state = tmp_path_factory.mktemp("curator")
    config = CuratorConfig(port=0, state_dir=state, model=TEST_MODEL, pairing=PairingConfig(max_pairs_per_dataset=20))
    server = build_server(config).start()
    yield server
    server.stop(0)


@pytest.fixture(scope="session")
def generator_server() -> Iterator:
    from generator_svc.backends.options import LocalOptions
    from generator_svc.config import GeneratorConfig
    from generator_svc.service import build_server

    config = GeneratorConfig(port=0, max_new_tokens=64, max_new_tokens_limit=50_000,
                             local=LocalOptions(model=TEST_MODEL, threads=1))
    server = build_server(config).start()
    yield server
    server.stop(0)


@pytest.fixture()
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says loudly when this host could not run the kernel-sandbox tests (they skip, which a green run hides)."""
    from evaluator_svc.isolation import missing_layers

    if missing := missing_layers():
        terminalreporter.write_sep("!", f"KERNEL SANDBOX TESTS DID NOT RUN: this host lacks {', '.join(missing)}; "
                                        "candidates ran in the weak mode only", red=True, bold=True)
