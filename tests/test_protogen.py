"""The generated stubs in deltanas/v1 must match protos/ (run `python -m deltanas.protogen` to fix)."""

from deltanas import protogen
from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2


def test_generated_stubs_are_fresh() -> None:
    assert protogen.stale_files() == []


def test_enums_reserve_zero_for_unspecified() -> None:
    enums = [common_pb2.Mode, evaluator_pb2.FailureStage, evaluator_pb2.CandidateStatus, curator_pb2.OperationState]
    for enum in enums:
        assert enum.Name(0).endswith("_UNSPECIFIED")


def test_every_rpc_has_its_own_request_and_response() -> None:
    seen: set[str] = set()
    for module in (curator_pb2, evaluator_pb2, generator_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request"
                assert method.output_type.name == f"{method.name}Response"
                assert method.input_type.full_name not in seen
                seen.add(method.input_type.full_name)
