"""Every service answers health checks with SERVING and lists itself through reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICES = {
    "curator_server": "deltanas.v1.CuratorService",
    "generator_server": "deltanas.v1.GeneratorService",
    "evaluator_server": "deltanas.v1.EvaluatorService",
}


@pytest.mark.parametrize(("fixture", "service"), SERVICES.items())
def test_health_and_reflection(fixture: str, service: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(fixture)
    assert server.address.startswith("127.0.0.1:")
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", service):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=10)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {service, "grpc.health.v1.Health"} <= names
        files = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol=service)]), timeout=10)
        assert any(r.file_descriptor_response.file_descriptor_proto for r in files)
