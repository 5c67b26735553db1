"""The names and defaults every part of deltanas agrees on, defined once (the proto is the source where it has one).

    >>> from deltanas import vocabulary as v
    >>> v.MODES, v.MODE_VALUES["delta"]                               # from the proto's Mode enum
    (('delta', 'full'), 1)
    >>> v.SERVICE_NAMES["evaluator"]                                  # from the proto's service descriptors
    'deltanas.v1.EvaluatorService'
    >>> v.resolve_device("auto")                                      # 'cuda' where torch sees a GPU, else 'cpu'

Generation modes, why an answer ended, the default code LLM and the paper's sampling settings, device names,
the tags and artifact file names of MLflow runs, and the gRPC service names. Importing it loads only the proto
stubs (torch is imported by `resolve_device` alone), so every service image can.
"""

from __future__ import annotations

from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2

# Generation modes, by their proto enum: MODE_DELTA -> "delta" (a unified diff), MODE_FULL -> "full" (whole code).
MODE_VALUES: dict[str, int] = {m.name.removeprefix("MODE_").lower(): m.number
                               for m in common_pb2.Mode.DESCRIPTOR.values if m.number}
MODE_NAMES: dict[int, str] = {number: name for name, number in MODE_VALUES.items()}
MODES: tuple[str, ...] = tuple(MODE_VALUES)

# Why an LLM answer ended (GenerateResponse.finish_reason): it was complete, or cut at max_new_tokens.
FINISH_STOP, FINISH_LENGTH = "stop", "length"

# The code LLM a generator serves and a curator fine-tunes unless told otherwise (a deltanas.model_sources source).
DEFAULT_MODEL = "qwen2.5-coder-0.5b"

# Sampling of the paper's experiment (NNGPT delta mode): the defaults of generators, searches and benches.
TEMPERATURE, TOP_K, TOP_P, MAX_NEW_TOKENS = 0.35, 50, 0.9, 1024

# Device names a service config takes; "auto" picks CUDA where torch sees a GPU.
DEVICES = ("auto", "cpu", "cuda")

# gRPC services, by the short names of `deltanas serve <name>`.
SERVICE_NAMES: dict[str, str] = {
    short: module.DESCRIPTOR.services_by_name[f"{short.capitalize()}Service"].full_name
    for short, module in (("curator", curator_pb2), ("generator", generator_pb2), ("evaluator", evaluator_pb2))}

# MLflow: deltanas's own tags carry this prefix (mlflow.* are MLflow's); the ones every run kind shares.
TAG_PREFIX = "deltanas."
ROLE_TAG = f"{TAG_PREFIX}role"  # search | candidate (client); dataset | finetune (curator)
SEARCH_TAG = f"{TAG_PREFIX}search_id"
CANDIDATE_TAG = f"{TAG_PREFIX}candidate_id"

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
