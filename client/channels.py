"""Channels to the three services: where they are (`Endpoints`), typed stubs over gRPC with the token and TLS they
may require (`Services`), and the checks that each address answers in its role.

    from client.channels import Endpoints, Services
    with Services(Endpoints(curator="127.0.0.1:50061", generator="127.0.0.1:50062",
                            evaluators=["127.0.0.1:50063", "dns:///evaluators:50063"], token="s3cret")) as svc:
        slots = svc.check()        # raises ConnectionError/ValueError naming the endpoint that is wrong
        baselines = svc.curator.ListBaselines(curator_pb2.ListBaselinesRequest(dataset="mnist", limit=1))

An evaluator given as `dns:///host:port` is resolved here to all its addresses, and each becomes a worker
with its own slots. gRPC's `round_robin` over one channel would spread calls over the same addresses but
hide how many workers there are and how many slots each has, so the scheduler could not fill them.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from deltanas.security import channel_credentials, with_token
from deltanas.server import MAX_MESSAGE_MB
from deltanas.v1 import curator_pb2_grpc, evaluator_pb2, evaluator_pb2_grpc, generator_pb2_grpc
from deltanas.vocabulary import SERVICE_NAMES

# Retries of UNAVAILABLE only, declared where gRPC expects them: the service config.
_RETRY_POLICY = {
    "maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "3s", "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps({"methodConfig": [{"name": [{"service": s} for s in SERVICE_NAMES.values()],
                                               "retryPolicy": _RETRY_POLICY}]})
ROLES = {"curator": SERVICE_NAMES["curator"], "generator": SERVICE_NAMES["generator"],
         "evaluators": SERVICE_NAMES["evaluator"]}


@dataclass
class Endpoints:
    """Where the services are (host:port, or dns:///host:port for evaluators) and how to reach them."""

    curator: str
    generator: str
    evaluators: list[str] = field(default_factory=list)
    token: str | None = field(default=None, repr=False)  # sent as 'authorization: Bearer <token>'
    tls: bool = False  # TLS with the system's roots; implied by tls_root_cert
    tls_root_cert: Path | None = None  # PEM CA that signed the services' certificates
    tls_client_cert: Path | None = None  # PEM client certificate, for services that require mutual TLS
    tls_client_key: Path | None = None
    max_message_mb: int = MAX_MESSAGE_MB

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_root_cert is not None


def open_channel(address: str, endpoints: Endpoints | None = None, server_name: str | None = None) -> grpc.Channel:
    """A channel with message limits, the retry service config, and `endpoints`' TLS and token.

    `server_name` is the name the server's certificate is checked against when `address` is a resolved IP.
    """
    settings = endpoints or Endpoints("", "")
    limit = settings.max_message_mb * 1024 * 1024
    # A restarted worker must be noticed within seconds: gRPC's default reconnect backoff grows to 120 s.
    options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1),
               ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
               ("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000)]
    if settings.uses_tls:
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        credentials = channel_credentials(settings.tls_root_cert, settings.tls_client_cert, settings.tls_client_key)
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return with_token(channel, settings.token)


def _connection_error(address: str, what: str, exc: grpc.RpcError, tls: bool) -> ConnectionError:
    code, details = exc.code(), exc.details() or ""
    hint = ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        hint = " (the token is missing or wrong)"
    elif code == grpc.StatusCode.UNAVAILABLE:
        hint = (" (unreachable, or TLS failed: is tls_root_cert the CA of its certificate, and does it serve TLS?)"
                if tls else " (unreachable, or it serves TLS: set tls_root_cert)")
    return ConnectionError(f"{address}: {what} failed: {code.name}: {details}{hint}")


def check_health(channel: grpc.Channel, address: str, timeout_s: float = 10.0, tls: bool = False) -> None:
    """Raises ConnectionError naming `address` unless it answers the health check with SERVING."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        raise _connection_error(address, "health check", exc, tls) from exc
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise ConnectionError(f"{address}: not serving ({status})")


def check_service(channel: grpc.Channel, address: str, service: str, timeout_s: float = 10.0,
                  tls: bool = False) -> None:
    """Raises ConnectionError naming `address` unless it serves `service` to us (reflection needs the token)."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]),
                                                                                        timeout=timeout_s)
        served = [s.name for reply in replies for s in reply.list_services_response.service]
    except grpc.RpcError as exc:
        raise _connection_error(address, "listing its services", exc, tls) from exc
    if service not in served:
        raise ConnectionError(f"{address}: does not serve {service} (it serves {', '.join(served) or 'nothing'})")


def check_address(role: str, address: str) -> None:
    """Raises ValueError naming `role` and `address` unless it reads as host:port (or a gRPC target URI)."""
    if address.startswith(("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:")):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{role}: {address!r} is not host:port")


def dns_addresses(address: str) -> tuple[list[str], str | None]:
    """(addresses, DNS name) of `address`: `dns:[//authority/]host:port` becomes every address it resolves to."""
    if not address.startswith("dns:"):
        return [address], None
    target = address.removeprefix("dns:")
    if target.startswith("//"):
        target = target[2:].partition("/")[2]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"evaluators: {address!r} is not dns:///host:port")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionError(f"evaluators: {address} resolves to no address ({exc})") from exc
    found = sorted({f"[{ip}]:{p}" if ":" in ip else f"{ip}:{p}" for *_, (ip, p, *_) in infos})
    if not found:
        raise ConnectionError(f"evaluators: {address} resolves to no address")
    return found, host.strip("[]")


class Services:
    """Stubs for one curator, one generator and any number of evaluator workers."""

    def __init__(self, endpoints: Endpoints) -> None:
        if not endpoints.evaluators:
            raise ValueError("evaluators: at least one evaluator address is required")
        for role, address in [("curator", endpoints.curator), ("generator", endpoints.generator),
                              *(("evaluators", a) for a in endpoints.evaluators)]:
            check_address(role, address)
        sources: dict[str, list[str]] = {}
        names: dict[str, str | None] = {}
        for given in endpoints.evaluators:
            addresses, name = dns_addresses(given)
            for address in addresses:
                sources.setdefault(address, []).append(given)
                names[address] = name
        duplicates = [f"{a} (from {', '.join(s)})" for a, s in sources.items() if len(s) > 1]
        if duplicates:
            raise ValueError(f"evaluators: duplicate address(es) {', '.join(sorted(duplicates))}")
        self.endpoints = endpoints
        self._expected = [(endpoints.curator, ROLES["curator"]), (endpoints.generator, ROLES["generator"]),
                          *((a, ROLES["evaluators"]) for a in sources)]
        self._channels = {a: open_channel(a, endpoints, names.get(a)) for a, _ in self._expected}
        self.curator = curator_pb2_grpc.CuratorServiceStub(self._channels[endpoints.curator])
        self.generator = generator_pb2_grpc.GeneratorServiceStub(self._channels[endpoints.generator])
        self.evaluators = {a: evaluator_pb2_grpc.EvaluatorServiceStub(self._channels[a]) for a in sources}

    def check(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Checks health, token and role of every endpoint; returns each evaluator's slots; raises naming it."""
        tls = self.endpoints.uses_tls
        for address, channel in self._channels.items():
            check_health(channel, address, timeout_s, tls)
        for address, service in self._expected:
            check_service(self._channels[address], address, service, timeout_s, tls)
        slots = {}
        for address, stub in self.evaluators.items():
            try:
                slots[address] = stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=timeout_s).slots
            except grpc.RpcError as exc:
                raise _connection_error(address, "GetCapacity", exc, tls) from exc
        return slots

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
