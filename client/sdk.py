"""Python SDK: typed access to the three services over gRPC.

    from client.sdk import Endpoints, Services
    with Services(Endpoints(curator="127.0.0.1:50061", generator="127.0.0.1:50062",
                            evaluators=["127.0.0.1:50063"])) as svc:
        baselines = svc.curator.ListBaselines(curator_pb2.ListBaselinesRequest(dataset="mnist", limit=1))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deltanas.server import MAX_MESSAGE_BYTES
from deltanas.v1 import curator_pb2_grpc, evaluator_pb2, evaluator_pb2_grpc, generator_pb2_grpc

# Retries of UNAVAILABLE only, declared where gRPC expects them: the service config.
_RETRY_POLICY = {
    "maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "3s", "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps({"methodConfig": [{"name": [{"service": f"deltanas.v1.{s}"} for s in
                                                        ("CuratorService", "GeneratorService", "EvaluatorService")],
                                               "retryPolicy": _RETRY_POLICY}]})


@dataclass
class Endpoints:
    """Where the services are; every address is host:port."""

    curator: str
    generator: str
    evaluators: list[str] = field(default_factory=list)


def open_channel(address: str) -> grpc.Channel:
    """An insecure channel with message limits and the retry service config."""
    return grpc.insecure_channel(address, options=[
        ("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ])


def check_health(channel: grpc.Channel, address: str, timeout_s: float = 10.0) -> None:
    """Raises ConnectionError naming `address` unless it answers the health check with SERVING."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        raise ConnectionError(f"{address}: health check failed: {exc.code().name}: {exc.details()}") from exc
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise ConnectionError(f"{address}: not serving ({status})")


class Services:
    """Stubs for one curator, one generator and any number of evaluator workers."""

    def __init__(self, endpoints: Endpoints) -> None:
        if not endpoints.evaluators:
            raise ValueError("evaluators: at least one evaluator address is required")
        duplicates = {a for a in endpoints.evaluators if endpoints.evaluators.count(a) > 1}
        if duplicates:
            raise ValueError(f"evaluators: duplicate address(es) {', '.join(sorted(duplicates))}")
        self.endpoints = endpoints
        self._channels = {a: open_channel(a) for a in {endpoints.curator, endpoints.generator, *endpoints.evaluators}}
        self.curator = curator_pb2_grpc.CuratorServiceStub(self._channels[endpoints.curator])
        self.generator = generator_pb2_grpc.GeneratorServiceStub(self._channels[endpoints.generator])
        self.evaluators = {a: evaluator_pb2_grpc.EvaluatorServiceStub(self._channels[a]) for a in endpoints.evaluators}

    def check(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Health-checks every endpoint and returns each evaluator's slot count; raises naming the endpoint."""
        for address, channel in self._channels.items():
            check_health(channel, address, timeout_s)
        return {a: stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=timeout_s).slots
                for a, stub in self.evaluators.items()}

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
