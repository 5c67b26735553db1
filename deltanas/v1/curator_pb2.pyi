from deltanas.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OperationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_STATE_UNSPECIFIED: _ClassVar[OperationState]
    OPERATION_STATE_PENDING: _ClassVar[OperationState]
    OPERATION_STATE_RUNNING: _ClassVar[OperationState]
    OPERATION_STATE_SUCCEEDED: _ClassVar[OperationState]
    OPERATION_STATE_FAILED: _ClassVar[OperationState]
    OPERATION_STATE_CANCELLED: _ClassVar[OperationState]
OPERATION_STATE_UNSPECIFIED: OperationState
OPERATION_STATE_PENDING: OperationState
OPERATION_STATE_RUNNING: OperationState
OPERATION_STATE_SUCCEEDED: OperationState
OPERATION_STATE_FAILED: OperationState
OPERATION_STATE_CANCELLED: OperationState

class ListBaselinesRequest(_message.Message):
    __slots__ = ("dataset", "epoch", "limit", "offset", "names")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    epoch: int
    limit: int
    offset: int
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., epoch: _Optional[int] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class ListBaselinesResponse(_message.Message):
    __slots__ = ("baselines", "total")
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    baselines: _containers.RepeatedCompositeFieldContainer[_common_pb2.Baseline]
    total: int
    def __init__(self, baselines: _Optional[_Iterable[_Union[_common_pb2.Baseline, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class BuildDatasetRequest(_message.Message):
    __slots__ = ("datasets", "mode", "min_gain", "max_diff_lines", "max_pairs_per_dataset", "include_candidates", "model", "max_tokens")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MIN_GAIN_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFF_LINES_FIELD_NUMBER: _ClassVar[int]
    MAX_PAIRS_PER_DATASET_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    mode: _common_pb2.Mode
    min_gain: float
    max_diff_lines: int
    max_pairs_per_dataset: int
    include_candidates: bool
    model: str
    max_tokens: int
    def __init__(self, datasets: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., min_gain: _Optional[float] = ..., max_diff_lines: _Optional[int] = ..., max_pairs_per_dataset: _Optional[int] = ..., include_candidates: _Optional[bool] = ..., model: _Optional[str] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class FilterCount(_message.Message):
    __slots__ = ("stage", "count")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    count: int
    def __init__(self, stage: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class BuildDatasetResponse(_message.Message):
    __slots__ = ("dataset_id", "path", "train_examples", "eval_examples", "counts")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    EVAL_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    path: str
    train_examples: int
    eval_examples: int
    counts: _containers.RepeatedCompositeFieldContainer[FilterCount]
    def __init__(self, dataset_id: _Optional[str] = ..., path: _Optional[str] = ..., train_examples: _Optional[int] = ..., eval_examples: _Optional[int] = ..., counts: _Optional[_Iterable[_Union[FilterCount, _Mapping]]] = ...) -> None: ...

class CheckNoveltyRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class CheckNoveltyResponse(_message.Message):
    __slots__ = ("max_jaccard", "nearest", "novel", "threshold")
    MAX_JACCARD_FIELD_NUMBER: _ClassVar[int]
    NEAREST_FIELD_NUMBER: _ClassVar[int]
    NOVEL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    max_jaccard: float
    nearest: str
    novel: bool
    threshold: float
    def __init__(self, max_jaccard: _Optional[float] = ..., nearest: _Optional[str] = ..., novel: _Optional[bool] = ..., threshold: _Optional[float] = ...) -> None: ...

class AcceptedCandidate(_message.Message):
    __slots__ = ("candidate_id", "baseline", "code", "accuracy", "gain", "budget")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GAIN_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    baseline: _common_pb2.Baseline
    code: str
    accuracy: float
    gain: float
    budget: _common_pb2.BudgetFacts
    def __init__(self, candidate_id: _Optional[str] = ..., baseline: _Optional[_Union[_common_pb2.Baseline, _Mapping]] = ..., code: _Optional[str] = ..., accuracy: _Optional[float] = ..., gain: _Optional[float] = ..., budget: _Optional[_Union[_common_pb2.BudgetFacts, _Mapping]] = ...) -> None: ...

class AddCandidatesRequest(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[AcceptedCandidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[AcceptedCandidate, _Mapping]]] = ...) -> None: ...

class AddCandidatesResponse(_message.Message):
    __slots__ = ("added", "duplicates", "total")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    added: int
    duplicates: int
    total: int
    def __init__(self, added: _Optional[int] = ..., duplicates: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class FineTuneOperation(_message.Message):
    __slots__ = ("id", "state", "dataset_id", "model", "step", "total_steps", "loss", "learning_rate", "tokens_per_second", "adapter_path", "error", "resumed_from_step", "restarts")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: OperationState
    dataset_id: str
    model: str
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    tokens_per_second: float
    adapter_path: str
    error: str
    resumed_from_step: int
    restarts: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[OperationState, str]] = ..., dataset_id: _Optional[str] = ..., model: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., adapter_path: _Optional[str] = ..., error: _Optional[str] = ..., resumed_from_step: _Optional[int] = ..., restarts: _Optional[int] = ...) -> None: ...

class StartFineTuneRequest(_message.Message):
    __slots__ = ("dataset_id", "model", "max_steps", "learning_rate", "lora_r", "resume_operation_id", "gradient_accumulation", "save_every")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LORA_R_FIELD_NUMBER: _ClassVar[int]
    RESUME_OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_FIELD_NUMBER: _ClassVar[int]
    SAVE_EVERY_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    model: str
    max_steps: int
    learning_rate: float
    lora_r: int
    resume_operation_id: str
    gradient_accumulation: int
    save_every: int
    def __init__(self, dataset_id: _Optional[str] = ..., model: _Optional[str] = ..., max_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., lora_r: _Optional[int] = ..., resume_operation_id: _Optional[str] = ..., gradient_accumulation: _Optional[int] = ..., save_every: _Optional[int] = ...) -> None: ...

class StartFineTuneResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: FineTuneOperation
    def __init__(self, operation: _Optional[_Union[FineTuneOperation, _Mapping]] = ...) -> None: ...

class GetFineTuneRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetFineTuneResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: FineTuneOperation
    def __init__(self, operation: _Optional[_Union[FineTuneOperation, _Mapping]] = ...) -> None: ...

class WatchFineTuneRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchFineTuneResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: FineTuneOperation
    def __init__(self, operation: _Optional[_Union[FineTuneOperation, _Mapping]] = ...) -> None: ...

class CancelFineTuneRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelFineTuneResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: FineTuneOperation
    def __init__(self, operation: _Optional[_Union[FineTuneOperation, _Mapping]] = ...) -> None: ...
