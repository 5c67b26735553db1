from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_DELTA: _ClassVar[Mode]
    MODE_FULL: _ClassVar[Mode]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
MODE_UNSPECIFIED: Mode
MODE_DELTA: Mode
MODE_FULL: Mode
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason

class Baseline(_message.Message):
    __slots__ = ("name", "dataset", "task", "metric", "epoch", "accuracy", "code", "hyperparameters", "batch", "transform")
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset: str
    task: str
    metric: str
    epoch: int
    accuracy: float
    code: str
    hyperparameters: _containers.ScalarMap[str, float]
    batch: int
    transform: str
    def __init__(self, name: _Optional[str] = ..., dataset: _Optional[str] = ..., task: _Optional[str] = ..., metric: _Optional[str] = ..., epoch: _Optional[int] = ..., accuracy: _Optional[float] = ..., code: _Optional[str] = ..., hyperparameters: _Optional[_Mapping[str, float]] = ..., batch: _Optional[int] = ..., transform: _Optional[str] = ...) -> None: ...

class BudgetFacts(_message.Message):
    __slots__ = ("accuracy", "spread", "seeds", "train_images", "num_params", "train_seconds")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_IMAGES_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    spread: float
    seeds: int
    train_images: int
    num_params: int
    train_seconds: float
    def __init__(self, accuracy: _Optional[float] = ..., spread: _Optional[float] = ..., seeds: _Optional[int] = ..., train_images: _Optional[int] = ..., num_params: _Optional[int] = ..., train_seconds: _Optional[float] = ...) -> None: ...
