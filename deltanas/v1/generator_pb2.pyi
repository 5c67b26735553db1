from deltanas.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "max_new_tokens")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("request_id", "baseline", "mode", "n", "sampling", "adapter", "seed", "feedback", "constrained", "progress_interval_s", "budget", "tried")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TRIED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    baseline: _common_pb2.Baseline
    mode: _common_pb2.Mode
    n: int
    sampling: SamplingParams
    adapter: str
    seed: int
    feedback: str
    constrained: bool
    progress_interval_s: float
    budget: _common_pb2.BudgetFacts
    tried: _containers.RepeatedCompositeFieldContainer[TriedChange]
    def __init__(self, request_id: _Optional[str] = ..., baseline: _Optional[_Union[_common_pb2.Baseline, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., n: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., adapter: _Optional[str] = ..., seed: _Optional[int] = ..., feedback: _Optional[str] = ..., constrained: _Optional[bool] = ..., progress_interval_s: _Optional[float] = ..., budget: _Optional[_Union[_common_pb2.BudgetFacts, _Mapping]] = ..., tried: _Optional[_Iterable[_Union[TriedChange, _Mapping]]] = ...) -> None: ...

class TriedChange(_message.Message):
    __slots__ = ("change", "outcome")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    change: str
    outcome: str
    def __init__(self, change: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("index", "seed", "raw_text", "prompt_tokens", "output_tokens", "output_lines", "latency_s", "tokens_per_second", "model", "adapter", "forced_tokens", "partial", "finish_reason", "parse_resamples")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RAW_TEXT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LINES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    FORCED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PARSE_RESAMPLES_FIELD_NUMBER: _ClassVar[int]
    index: int
    seed: int
    raw_text: str
    prompt_tokens: int
    output_tokens: int
    output_lines: int
    latency_s: float
    tokens_per_second: float
    model: str
    adapter: str
    forced_tokens: int
    partial: bool
    finish_reason: _common_pb2.FinishReason
    parse_resamples: int
    def __init__(self, index: _Optional[int] = ..., seed: _Optional[int] = ..., raw_text: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., output_lines: _Optional[int] = ..., latency_s: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., model: _Optional[str] = ..., adapter: _Optional[str] = ..., forced_tokens: _Optional[int] = ..., partial: _Optional[bool] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., parse_resamples: _Optional[int] = ...) -> None: ...

class ListAdaptersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAdaptersResponse(_message.Message):
    __slots__ = ("adapters",)
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    adapters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, adapters: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadAdapterRequest(_message.Message):
    __slots__ = ("name", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class LoadAdapterResponse(_message.Message):
    __slots__ = ("adapters",)
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    adapters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, adapters: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("backend", "model", "context_length", "adapters", "constrained_decoding")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINED_DECODING_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    context_length: int
    adapters: _containers.RepeatedScalarFieldContainer[str]
    constrained_decoding: bool
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ..., context_length: _Optional[int] = ..., adapters: _Optional[_Iterable[str]] = ..., constrained_decoding: _Optional[bool] = ...) -> None: ...
