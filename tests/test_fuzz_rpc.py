"""Property-based fuzzing of every RPC of the three services over real gRPC on loopback.

    .venv/bin/python -m pytest -q tests/test_fuzz_rpc.py                   # 25 examples per RPC, reproducible
    .venv/bin/python -m pytest -q tests/test_fuzz_rpc.py --hypothesis-show-statistics     # status codes seen
    DELTANAS_FUZZ_EXAMPLES=500 DELTANAS_FUZZ_RANDOM=1 .venv/bin/python -m pytest -q tests/test_fuzz_rpc.py

Requests are drawn from the message descriptors (strings incl. huge and unicode, extreme ints, NaN and inf,
unknown enum numbers, random map entries, oneofs); a few fields are steered so that valid requests stay cheap
(Generate: n=1, max_new_tokens <= 4; Evaluate: a one-line baseline, so a diff that applies fails the contract
stage before any training; BuildDataset and StartFineTune: no real dataset). Every call must end in OK or a
deliberate status (never INTERNAL, UNKNOWN or a timeout), INVALID_ARGUMENT must name a request field, and the
server must still answer its health check with SERVING.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deltanas.v1 import curator_pb2, evaluator_pb2, generator_pb2

SERVERS = {"deltanas.v1.CuratorService": "curator_server", "deltanas.v1.GeneratorService": "generator_server",
           "deltanas.v1.EvaluatorService": "evaluator_server"}
METHODS = [m for module in (curator_pb2, evaluator_pb2, generator_pb2)
           for service in module.DESCRIPTOR.services_by_name.values() for m in service.methods]
FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED)
CALL_TIMEOUT_S = 120
MISSING = Path("/nonexistent-deltanas-fuzz")

_CHARS = st.characters(exclude_categories=("Cs",))  # protobuf strings must be valid UTF-8
TEXT = st.text(_CHARS, max_size=40)
HUGE = st.builds(lambda s, k: s * k, st.text(_CHARS, min_size=1, max_size=8), st.integers(1_000, 20_000))
SPECIAL = st.sampled_from(["", " ", "\x00", "..", "../../etc/passwd", "%s%n", "mnist", "ft-0"])


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, one_in: int = 8) -> st.SearchStrategy:
    """`rare` about once in `one_in` draws, `common` otherwise."""
    return st.integers(1, one_in).flatmap(lambda i: rare if i == 1 else common)


STRINGS = mostly(st.one_of(TEXT, SPECIAL), HUGE)
_ALNUM = st.text(st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=20)
ALNUM = st.one_of(_ALNUM, st.builds(lambda s, k: s * k, _ALNUM, st.integers(60, 100)))  # past the 255-byte name limit
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)
KINDS = {FieldDescriptor.TYPE_STRING: STRINGS, FieldDescriptor.TYPE_BOOL: st.booleans(),
         FieldDescriptor.TYPE_INT32: INT32, FieldDescriptor.TYPE_INT64: INT64,
         FieldDescriptor.TYPE_DOUBLE: DOUBLES, FieldDescriptor.TYPE_FLOAT: FLOATS}

BASELINE = "x = 1\n"  # no Net class: whatever a diff makes of it fails before the sandbox
DIFF_LINES = st.tuples(st.sampled_from([" ", "+", "-", "@@ ", "\\ "]), st.text(_CHARS, max_size=30)).map("".join)
DIFFS = st.lists(DIFF_LINES, max_size=10).map(lambda lines: "--- a/m.py\n+++ b/m.py\n@@ -1,1 +1,2 @@\n"
                                                             + "\n".join(lines) + "\n")

# Steered fields per method: message paths (dotted) -> strategy, so that a valid request stays cheap.
STEER: dict[str, dict[str, st.SearchStrategy]] = {
    "deltanas.v1.EvaluatorService.Evaluate": {  # each field mostly valid, so that some requests pass validation
        "baseline_code": mostly(st.just(BASELINE), STRINGS), "delta_answer": mostly(DIFFS, STRINGS, 3),
        "code": mostly(TEXT, STRINGS, 3), "dataset": mostly(st.just("digits"), STRINGS),
        "transform": mostly(st.just("norm"), STRINGS), "epochs": mostly(st.just(1), INT32),
        "batch": mostly(st.just(8), INT32), "train_limit": mostly(st.just(64), INT32),
        "test_limit": mostly(st.just(64), INT32), "timeout_s": mostly(st.just(30.0), DOUBLES),
        "hyperparameters": mostly(st.just({"lr": 0.01}), st.dictionaries(TEXT, DOUBLES, max_size=4))},
    "deltanas.v1.GeneratorService.Generate": {
        "n": mostly(st.just(1), st.one_of(st.integers(-(2**31), 0), st.integers(65, 2**31 - 1))),
        "mode": mostly(st.sampled_from([1, 2]), INT32), "baseline.code": mostly(st.just(BASELINE), STRINGS),
        "sampling.max_new_tokens": mostly(st.integers(1, 4), st.one_of(st.integers(-(2**31), -1),
                                                                       st.integers(50_001, 2**31 - 1))),
        "sampling.temperature": mostly(st.just(0.5), FLOATS), "sampling.top_p": mostly(st.just(0.9), FLOATS),
        "sampling.top_k": mostly(st.just(10), INT32)},
    "deltanas.v1.GeneratorService.LoadAdapter": {
        # A relative path is looked up on the Hugging Face hub (about 24 s of retries offline): see the report.
        "path": st.one_of(st.just("/"), st.just("/etc/hostname"), st.just(str(Path(__file__).parent)),
                          TEXT.map(lambda s: str(MISSING / s.replace("\x00", "")))),
        "name": st.one_of(st.just("fuzz"), STRINGS)},
    "deltanas.v1.CuratorService.ListBaselines": {
        "dataset": mostly(st.just("mnist"), STRINGS), "limit": mostly(st.integers(0, 3), INT32),
        "offset": mostly(st.integers(0, 3), INT32), "epoch": mostly(st.integers(0, 2), INT32)},
    "deltanas.v1.CuratorService.StartFineTune": {"dataset_id": mostly(ALNUM, STRINGS, 3)},
    "deltanas.v1.CuratorService.BuildDataset": {"datasets": st.lists(TEXT.filter(lambda s: s != "mnist"),
                                                                     max_size=3)},
}


def _message_class(descriptor: Descriptor) -> type:
    return message_factory.GetMessageClass(descriptor)


def _field(field: FieldDescriptor, steer: dict[str, st.SearchStrategy], path: str, depth: int) -> st.SearchStrategy:
    if path in steer:
        return steer[path]
    if field.type == FieldDescriptor.TYPE_ENUM:
        value = st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 99))
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key, val = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return st.dictionaries(_field(key, {}, "", depth), _field(val, {}, "", depth), max_size=4)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        value = messages(field.message_type, steer, f"{path}.", depth + 1)
    else:
        value = KINDS[field.type]
    return st.lists(value, max_size=3) if field.is_repeated else value


def messages(descriptor: Descriptor, steer: dict[str, st.SearchStrategy], prefix: str = "",
             depth: int = 0) -> st.SearchStrategy:
    """Random instances of `descriptor`'s message: any subset of fields, one member of each oneof."""
    fields = {f.name: _field(f, steer, prefix + f.name, depth) for f in descriptor.fields if depth < 3}

    steered = {name for name in fields if any(p == prefix + name or p.startswith(f"{prefix}{name}.") for p in steer)}

    @st.composite
    def build(draw: st.DrawFn) -> object:
        values = {name: draw(s) for name, s in fields.items() if name in steered or draw(st.booleans())}
        for oneof in descriptor.oneofs:
            chosen = draw(st.sampled_from([None, *[f.name for f in oneof.fields]]))
            for f in oneof.fields:
                if f.name != chosen:
                    values.pop(f.name, None)
        return _message_class(descriptor)(**values)

    return build()


def _call(channel: grpc.Channel, method: MethodDescriptor, request: object) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    reply = _message_class(method.output_type)
    if method.server_streaming:
        call = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                    response_deserializer=reply.FromString)
        for _ in call(request, timeout=CALL_TIMEOUT_S):
            pass
    else:
        call = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                   response_deserializer=reply.FromString)
        call(request, timeout=CALL_TIMEOUT_S)


def _settings() -> settings:
    return settings(max_examples=int(os.environ.get("DELTANAS_FUZZ_EXAMPLES", "25")), deadline=None,
                    derandomize=not os.environ.get("DELTANAS_FUZZ_RANDOM"), database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


def _short(request: object) -> str:
    text = repr(request)
    return text if len(text) < 2000 else text[:2000] + f"... ({len(text)} chars)"


def test_every_rpc_is_fuzzed() -> None:
    assert len(METHODS) == 14
    assert {m.containing_service.full_name for m in METHODS} == set(SERVERS)
    assert set(STEER) <= {m.full_name for m in METHODS}


@pytest.fixture(scope="module")
def channels() -> Iterator[dict[str, grpc.Channel]]:
    """One channel per server address, without a client-side size limit (the server's limit is under test)."""
    opened: dict[str, grpc.Channel] = {}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name.removeprefix("deltanas.v1."))
@_settings()
@given(data=st.data())
def test_rpc_survives_random_input(method: MethodDescriptor, request: pytest.FixtureRequest,
                                   channels: dict[str, grpc.Channel], data: st.DataObject) -> None:
    server = request.getfixturevalue(SERVERS[method.containing_service.full_name])
    if server.address not in channels:
        channels[server.address] = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", -1)])
    channel = channels[server.address]
    message = data.draw(messages(method.input_type, STEER.get(method.full_name, {})), label="request")
    try:
        _call(channel, method, message)
        event("OK")
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        event(code.name)
        assert code not in FORBIDDEN, f"{method.name} -> {code.name}: {details[:500]}\n{_short(message)}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            named = re.split(r"[.\[:]", details, maxsplit=1)[0]
            fields = {f.name for f in method.input_type.fields} | {o.name for o in method.input_type.oneofs}
            assert named in fields, f"{method.name}: message does not start with a field: {details[:300]}"
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30).status
    assert status == health_pb2.HealthCheckResponse.SERVING, f"{method.name} left the server {status}"
