from deltanas.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_STAGE_UNSPECIFIED: _ClassVar[FailureStage]
    FAILURE_STAGE_EXTRACT: _ClassVar[FailureStage]
    FAILURE_STAGE_APPLY: _ClassVar[FailureStage]
    FAILURE_STAGE_SYNTAX: _ClassVar[FailureStage]
    FAILURE_STAGE_CONTRACT: _ClassVar[FailureStage]
    FAILURE_STAGE_SAFETY: _ClassVar[FailureStage]
    FAILURE_STAGE_INSTANTIATE: _ClassVar[FailureStage]
    FAILURE_STAGE_FORWARD: _ClassVar[FailureStage]
    FAILURE_STAGE_TRAIN: _ClassVar[FailureStage]
    FAILURE_STAGE_EVALUATE: _ClassVar[FailureStage]

class CandidateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANDIDATE_STATUS_UNSPECIFIED: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_VALID: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_INVALID: _ClassVar[CandidateStatus]
FAILURE_STAGE_UNSPECIFIED: FailureStage
FAILURE_STAGE_EXTRACT: FailureStage
FAILURE_STAGE_APPLY: FailureStage
FAILURE_STAGE_SYNTAX: FailureStage
FAILURE_STAGE_CONTRACT: FailureStage
FAILURE_STAGE_SAFETY: FailureStage
FAILURE_STAGE_INSTANTIATE: FailureStage
FAILURE_STAGE_FORWARD: FailureStage
FAILURE_STAGE_TRAIN: FailureStage
FAILURE_STAGE_EVALUATE: FailureStage
CANDIDATE_STATUS_UNSPECIFIED: CandidateStatus
CANDIDATE_STATUS_VALID: CandidateStatus
CANDIDATE_STATUS_INVALID: CandidateStatus

class EvaluateRequest(_message.Message):
    __slots__ = ("request_id", "candidate_id", "baseline_code", "delta_answer", "code", "dataset", "hyperparameters", "batch", "transform", "epochs", "train_limit", "test_limit", "timeout_s", "finish_reason", "seed")
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_CODE_FIELD_NUMBER: _ClassVar[int]
    DELTA_ANSWER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    candidate_id: str
    baseline_code: str
    delta_answer: str
    code: str
    dataset: str
    hyperparameters: _containers.ScalarMap[str, float]
    batch: int
    transform: str
    epochs: int
    train_limit: int
    test_limit: int
    timeout_s: float
    finish_reason: _common_pb2.FinishReason
    seed: int
    def __init__(self, request_id: _Optional[str] = ..., candidate_id: _Optional[str] = ..., baseline_code: _Optional[str] = ..., delta_answer: _Optional[str] = ..., code: _Optional[str] = ..., dataset: _Optional[str] = ..., hyperparameters: _Optional[_Mapping[str, float]] = ..., batch: _Optional[int] = ..., transform: _Optional[str] = ..., epochs: _Optional[int] = ..., train_limit: _Optional[int] = ..., test_limit: _Optional[int] = ..., timeout_s: _Optional[float] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("candidate_id", "status", "failure_stage", "failure_reason", "accuracy", "patched_code", "applied_diff", "diff_lines", "duration_s", "metrics", "logs", "worker", "predictions_digest")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_STAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PATCHED_CODE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIFF_FIELD_NUMBER: _ClassVar[int]
    DIFF_LINES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    status: CandidateStatus
    failure_stage: FailureStage
    failure_reason: str
    accuracy: float
    patched_code: str
    applied_diff: str
    diff_lines: int
    duration_s: float
    metrics: _containers.ScalarMap[str, float]
    logs: str
    worker: str
    predictions_digest: str
    def __init__(self, candidate_id: _Optional[str] = ..., status: _Optional[_Union[CandidateStatus, str]] = ..., failure_stage: _Optional[_Union[FailureStage, str]] = ..., failure_reason: _Optional[str] = ..., accuracy: _Optional[float] = ..., patched_code: _Optional[str] = ..., applied_diff: _Optional[str] = ..., diff_lines: _Optional[int] = ..., duration_s: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., logs: _Optional[str] = ..., worker: _Optional[str] = ..., predictions_digest: _Optional[str] = ...) -> None: ...

class GetCapacityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapacityResponse(_message.Message):
    __slots__ = ("slots", "busy", "device", "datasets", "max_epochs", "worker", "sandbox_layers")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_LAYERS_FIELD_NUMBER: _ClassVar[int]
    slots: int
    busy: int
    device: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    max_epochs: int
    worker: str
    sandbox_layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, slots: _Optional[int] = ..., busy: _Optional[int] = ..., device: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., max_epochs: _Optional[int] = ..., worker: _Optional[str] = ..., sandbox_layers: _Optional[_Iterable[str]] = ...) -> None: ...
