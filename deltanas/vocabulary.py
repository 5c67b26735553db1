"""The names and defaults every part of deltanas agrees on, defined once (the proto is the source where it has one).

    >>> from deltanas import vocabulary as v
    >>> v.MODES, v.MODE_VALUES["delta"]                               # from the proto's Mode enum
    (('delta', 'full'), 1)
    >>> v.SERVICE_NAMES["evaluator"]                                  # from the proto's service descriptors
    'deltanas.v1.EvaluatorService'
    >>> v.finish_reason_name(v.FINISH_LENGTH), v.failure_stage_name(3), v.operation_state_name(3)
    ('length', 'syntax', 'succeeded')
    >>> v.resolve_device("auto")                                      # 'cuda' where torch sees a GPU, else 'cpu'

Generation modes, why an answer ended, where a candidate failed and what state a fine-tune is in (each proto
enum <-> the lower-case name the logs, tags and reports use), the default code LLM and the paper's sampling
settings, the tags and artifact file names of MLflow runs, and the gRPC service names. Importing it loads only the proto
stubs (torch is imported by `resolve_device` alone), so every service image can.
"""

from __future__ import annotations

from typing import Any

from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2

# Generation modes, by their proto enum: MODE_DELTA -> "delta" (a unified diff), MODE_FULL -> "full" (whole code).
MODE_VALUES: dict[str, int] = {m.name.removeprefix("MODE_").lower(): m.number
                               for m in common_pb2.Mode.DESCRIPTOR.values if m.number}
MODE_NAMES: dict[int, str] = {number: name for name, number in MODE_VALUES.items()}
MODES: tuple[str, ...] = tuple(MODE_VALUES)



def _names(enum: Any, prefix: str) -> dict[int, str]:
    """Number -> lower-case name without `prefix` of a proto enum's values; UNSPECIFIED (0) -> ""."""
    return {v.number: v.name.removeprefix(prefix).lower() if v.number else "" for v in enum.DESCRIPTOR.values}


def _name(names: dict[int, str], value: int, what: str) -> str:
    if value not in names:
        raise ValueError(f"{what}: {value} is not a value of the proto enum")
    return names[value]


def _value(names: dict[int, str], name: str, what: str) -> int:
    values = {n: number for number, n in names.items()}
    if name not in values:
        raise ValueError(f"{what}: unknown {name!r}; known: {', '.join(n for n in values if n)}")
    return values[name]


# Why an LLM answer ended (the proto's FinishReason): STOP, it was complete; LENGTH, cut at max_new_tokens.
FINISH_REASONS: dict[int, str] = _names(common_pb2.FinishReason, "FINISH_REASON_")  # {0: "", 1: "stop", ...}
FINISH_STOP, FINISH_LENGTH = common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH
FINISH_UNKNOWN = common_pb2.FINISH_REASON_UNSPECIFIED  # not said (a progress message, a client that does not say)

# Where a candidate failed (the proto's FailureStage): {0: "", 1: "extract", 2: "apply", 3: "syntax", ...}.
FAILURE_STAGES: dict[int, str] = _names(evaluator_pb2.FailureStage, "FAILURE_STAGE_")

# A fine-tuning operation's state (the proto's OperationState): {1: "pending", ..., 3: "succeeded", ...}.
OPERATION_STATES: dict[int, str] = _names(curator_pb2.OperationState, "OPERATION_STATE_")


def finish_reason_name(value: int) -> str:
    """FINISH_REASON_STOP -> "stop", FINISH_REASON_LENGTH -> "length", UNSPECIFIED -> "" (tags, logs)."""
    return _name(FINISH_REASONS, value, "finish_reason")


def finish_reason_value(name: str) -> int:
    """"stop" -> FINISH_REASON_STOP, "length" -> FINISH_REASON_LENGTH, "" -> UNSPECIFIED; ValueError otherwise."""
    return _value(FINISH_REASONS, name, "finish_reason")


def failure_stage_name(value: int) -> str:
    """FAILURE_STAGE_SYNTAX -> "syntax"; UNSPECIFIED (a valid candidate) -> ""."""
    return _name(FAILURE_STAGES, value, "failure_stage")


def failure_stage_value(name: str) -> int:
    """"syntax" (or "SYNTAX", a Stage's name) -> FAILURE_STAGE_SYNTAX; "" -> UNSPECIFIED; ValueError otherwise."""
    return _value(FAILURE_STAGES, name.lower(), "failure_stage")


def operation_state_name(value: int) -> str:
    """OPERATION_STATE_SUCCEEDED -> "succeeded"."""
    return _name(OPERATION_STATES, value, "state")


def operation_state_value(name: str) -> int:
    """"succeeded" (or "SUCCEEDED", as curator_svc.operations stores it) -> OPERATION_STATE_SUCCEEDED."""
    return _value(OPERATION_STATES, name.lower(), "state")


# The code LLM a generator serves and a curator fine-tunes unless told otherwise (a deltanas.model_sources source).
DEFAULT_MODEL = "qwen2.5-coder-0.5b"

# Sampling of the paper's experiment (NNGPT delta mode): the defaults of generators, searches and benches.
TEMPERATURE, TOP_K, TOP_P, MAX_NEW_TOKENS = 0.35, 50, 0.9, 1024
MAX_TEMPERATURE = 5.0  # the highest a generator accepts

# gRPC services, by the short names of `deltanas serve <name>`.
SERVICE_NAMES: dict[str, str] = {
    short: module.DESCRIPTOR.services_by_name[f"{short.capitalize()}Service"].full_name
    for short, module in (("curator", curator_pb2), ("generator", generator_pb2), ("evaluator", evaluator_pb2))}

# MLflow: deltanas's own tags carry this prefix (mlflow.* are MLflow's); the ones every run kind shares.
TAG_PREFIX = "deltanas."
ROLE_TAG = f"{TAG_PREFIX}role"  # search | candidate | reference (client); dataset | finetune (curator)
SEARCH_TAG = f"{TAG_PREFIX}search_id"
CANDIDATE_TAG = f"{TAG_PREFIX}candidate_id"
REFERENCE_TAG = f"{TAG_PREFIX}reference_key"  # a same-budget reference run (role reference)
SKIPPED_TAG = f"{TAG_PREFIX}skipped_baselines"  # a search's baselines that do not learn under its budget (JSON list)

# An evaluator's metrics that the sandboxed worker reported about itself (its parameter count, training time, ...)
# carry this prefix: the candidate could have rewritten them (evaluator_svc.scoring.UNVERIFIED says the same).
UNVERIFIED_PREFIX = "unverified."

# Artifact file names of a candidate's child run (constant, so that what is logged is what is read back).
RAW_OUTPUT_FILE = "llm_output.txt"
DIFF_FILE = "candidate_diff.txt"  # .txt: the MLflow UI previews it (it has no viewer for .diff)
CODE_FILE = "model.py"
BASELINE_FILE = "baseline.py"
PROMPT_FILE = "prompt.txt"
FAILURE_FILE = "failure.txt"


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' where torch sees a GPU, else 'cpu'; any other name (cpu, cuda, cuda:1) as given."""
    if name == "auto":
        import torch  # only here: the vocabulary itself must load without torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
