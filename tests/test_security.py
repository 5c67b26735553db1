"""Token authentication, TLS, message limits and endpoint validation over real gRPC on loopback.

    .venv/bin/python -m pytest -q tests/test_security.py

The servers host the real evaluator servicer; the curator and generator roles are the generated base
servicers (Services.check only lists them through reflection), so no LLM or LEMUR index is loaded.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client.channels import Endpoints, Services, open_channel
from deltanas.config import load_config
from deltanas.security import bearer
from deltanas.server import ServiceServer
from deltanas.testing.processes import free_port
from deltanas.v1 import curator_pb2_grpc, evaluator_pb2, evaluator_pb2_grpc, generator_pb2_grpc
from evaluator_svc.config import ENV_PREFIX, EvaluatorConfig
from evaluator_svc.executors.registry import make_executor
from evaluator_svc.service import SERVICE_NAME, EvaluatorServicer

TOKEN = "correct horse battery staple"


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """(cert, key) PEM files of a self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("certs")
    return {name: self_signed(directory, name) for name in ("server", "other", "client")}


@pytest.fixture()
def serve() -> Iterator[Callable[..., ServiceServer]]:
    """Starts an evaluator (plus curator and generator roles) built from EvaluatorConfig(**server fields)."""
    servers: list[ServiceServer] = []

    def start(evaluator_only: bool = False, **fields: object) -> ServiceServer:
        config = EvaluatorConfig(port=0, allow_weak_sandbox=True, **fields)  # no candidate runs here
        server = ServiceServer("evaluator", config)
        server.add(evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server,
                   EvaluatorServicer(config, make_executor(config)), SERVICE_NAME)
        if evaluator_only:
            servers.append(server.start())
            return server
        server.add(curator_pb2_grpc.add_CuratorServiceServicer_to_server, curator_pb2_grpc.CuratorServiceServicer(),
                   "deltanas.v1.CuratorService")
        server.add(generator_pb2_grpc.add_GeneratorServiceServicer_to_server,
                   generator_pb2_grpc.GeneratorServiceServicer(), "deltanas.v1.GeneratorService")
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop(0)


def endpoints(address: str, **settings: object) -> Endpoints:
    return Endpoints(curator=address, generator=address, evaluators=[address], **settings)


def capacity(address: str, metadata: list[tuple[str, str]] | None = None) -> evaluator_pb2.GetCapacityResponse:
    with grpc.insecure_channel(address) as channel:
        return evaluator_pb2_grpc.EvaluatorServiceStub(channel).GetCapacity(
            evaluator_pb2.GetCapacityRequest(), metadata=metadata, timeout=10)


def test_token_guards_every_rpc_but_health(serve) -> None:
    server = serve(auth_token=TOKEN)
    for metadata, problem in ((None, "missing"), ([bearer("wrong")], "wrong token"), ([("authorization", TOKEN)],
                                                                                      "wrong token")):
        with pytest.raises(grpc.RpcError) as err:
            capacity(server.address, metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert problem in err.value.details()
    assert capacity(server.address, [bearer(TOKEN)]).slots == 1
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            list(listing)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_services_check_with_and_without_the_token(serve) -> None:
    server = serve(auth_token=TOKEN)
    with Services(endpoints(server.address, token=TOKEN)) as svc:
        assert svc.check() == {server.address: 1}
    for token in (None, "wrong"):
        with Services(endpoints(server.address, token=token)) as svc, pytest.raises(ConnectionError) as err:
            svc.check()
        assert str(err.value).startswith(f"{server.address}: ")
        assert "UNAUTHENTICATED" in str(err.value) and "token" in str(err.value)


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, serve) -> None:
    monkeypatch.setenv(ENV_PREFIX + "AUTH_TOKEN", TOKEN)
    config = load_config(EvaluatorConfig, env_prefix=ENV_PREFIX, overrides={"port": 0})
    assert config.auth_token == TOKEN and TOKEN not in repr(config)
    assert config.host == "127.0.0.1"
    server = serve(auth_token=config.auth_token)
    assert capacity(server.address, [bearer(TOKEN)]).slots == 1


def test_tls_with_the_right_and_a_wrong_root(serve, certs) -> None:
    cert, key = certs["server"]
    server = serve(auth_token=TOKEN, tls_cert=cert, tls_key=key)
    with Services(endpoints(server.address, token=TOKEN, tls_root_cert=cert)) as svc:
        assert svc.check() == {server.address: 1}
    for settings in ({"tls_root_cert": certs["other"][0]}, {}):
        with Services(endpoints(server.address, token=TOKEN, **settings)) as svc, \
                pytest.raises(ConnectionError) as err:
            svc.check(timeout_s=5)
        assert str(err.value).startswith(f"{server.address}: health check failed: UNAVAILABLE")
        assert "TLS" in str(err.value)
    plain = serve(auth_token=TOKEN)
    with Services(endpoints(plain.address, token=TOKEN, tls_root_cert=cert)) as svc, \
            pytest.raises(ConnectionError, match=f"^{plain.address}: health check failed: UNAVAILABLE.*TLS"):
        svc.check(timeout_s=5)


def test_mutual_tls_needs_a_client_certificate(serve, certs) -> None:
    cert, key = certs["server"]
    client_cert, client_key = certs["client"]
    server = serve(tls_cert=cert, tls_key=key, tls_client_ca=client_cert)
    with Services(endpoints(server.address, tls_root_cert=cert, tls_client_cert=client_cert,
                            tls_client_key=client_key)) as svc:
        assert svc.check() == {server.address: 1}
    with Services(endpoints(server.address, tls_root_cert=cert)) as svc, pytest.raises(ConnectionError) as err:
        svc.check(timeout_s=5)
    assert str(err.value).startswith(f"{server.address}: ")


def test_tls_key_without_cert_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^tls_cert: "):
        ServiceServer("evaluator", EvaluatorConfig(port=0, tls_key=tmp_path / "k.pem"))
    with pytest.raises(ValueError, match=r"^tls_cert: cannot read"):
        ServiceServer("evaluator", EvaluatorConfig(port=0, tls_cert=tmp_path / "c.pem",
                                                               tls_key=tmp_path / "k.pem"))


def test_message_limit_is_configurable(serve) -> None:
    server = serve(max_message_mb=1)
    big = evaluator_pb2.EvaluateRequest(code="x" * (2 * 1024 * 1024))
    with open_channel(server.address) as channel, pytest.raises(grpc.RpcError) as err:
        evaluator_pb2_grpc.EvaluatorServiceStub(channel).Evaluate(big, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_check_names_an_unreachable_evaluator(serve) -> None:
    server = serve()
    dead = f"127.0.0.1:{free_port()}"
    with Services(Endpoints(server.address, server.address, [server.address, dead])) as svc, \
            pytest.raises(ConnectionError, match=f"^{dead}: health check failed: UNAVAILABLE"):
        svc.check(timeout_s=5)


def test_check_names_an_endpoint_in_the_wrong_role(serve) -> None:
    server, evaluator = serve(), serve(evaluator_only=True)
    with Services(Endpoints(evaluator.address, server.address, [server.address])) as svc, \
            pytest.raises(ConnectionError, match=f"^{evaluator.address}: does not serve deltanas.v1.CuratorService"):
        svc.check()


@pytest.mark.parametrize(("evaluators", "problem"), [
    (["127.0.0.1:50063", "127.0.0.1:50063"], r"^evaluators: duplicate address\(es\) 127\.0\.0\.1:50063"),
    (["127.0.0.1:50063", "dns:///localhost:50063"],
     r"^evaluators: duplicate address\(es\) 127\.0\.0\.1:50063 \(from 127\.0\.0\.1:50063, dns:///localhost:50063\)"),
    (["127.0.0.1"], r"^evaluators: '127\.0\.0\.1' is not host:port"),
    (["dns:///localhost"], r"^evaluators: 'dns:///localhost' is not dns:///host:port"),
    ([], "^evaluators: at least one"),
])
def test_bad_evaluator_lists_are_refused(evaluators: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Services(Endpoints("127.0.0.1:50061", "127.0.0.1:50062", evaluators))


def test_a_dns_name_that_resolves_to_nothing_is_named() -> None:
    with pytest.raises(ConnectionError, match=r"^evaluators: dns:///nothing\.invalid:50063 resolves to no address"):
        Services(Endpoints("127.0.0.1:50061", "127.0.0.1:50062", ["dns:///nothing.invalid:50063"]))


def test_a_dns_name_becomes_one_worker_per_address(serve) -> None:
    server = serve()
    with Services(Endpoints(server.address, server.address, [f"dns:///localhost:{server.port}"])) as svc:
        assert f"127.0.0.1:{server.port}" in svc.evaluators
        assert all(a.endswith(f":{server.port}") for a in svc.evaluators)


def test_an_error_echoing_a_huge_input_keeps_its_status(serve) -> None:
    server = serve()
    huge = evaluator_pb2.EvaluateRequest(code="x", dataset="é" * 100_000)
    with open_channel(server.address) as channel, pytest.raises(grpc.RpcError) as err:
        evaluator_pb2_grpc.EvaluatorServiceStub(channel).Evaluate(huge, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("dataset: unknown dataset 'ééé")
    assert err.value.details().endswith(" characters)")
