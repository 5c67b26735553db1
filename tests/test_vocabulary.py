"""deltanas.vocabulary is the one place for shared names and defaults: it agrees with the proto, loads without
torch, and its values are not spelled out again anywhere else in the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deltanas import vocabulary
from deltanas.prompts import TEMPLATE_DIR
from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("client", "curator_svc", "deltadiff", "deltanas", "evaluator_svc", "generator_svc", "bench")
           for p in (ROOT / d).rglob("*.py") if "v1" not in p.parts and p.name != "vocabulary.py"]


def test_modes_are_the_proto_enum_and_each_has_its_prompt_templates() -> None:
    assert vocabulary.MODE_VALUES == {"delta": common_pb2.MODE_DELTA, "full": common_pb2.MODE_FULL}
    assert {vocabulary.MODE_NAMES[v]: v for v in vocabulary.MODE_NAMES} == vocabulary.MODE_VALUES
    for mode in vocabulary.MODES:
        assert {p.name for p in (TEMPLATE_DIR / mode).iterdir()} >= {"system.txt", "user.txt"}


def test_service_names_are_those_of_the_proto_services() -> None:
    declared = {s.full_name for m in (curator_pb2, generator_pb2, evaluator_pb2)
                for s in m.DESCRIPTOR.services_by_name.values()}
    assert set(vocabulary.SERVICE_NAMES.values()) == declared
    assert vocabulary.SERVICE_NAMES["evaluator"] == "deltanas.v1.EvaluatorService"


def test_enums_convert_to_and_from_names_in_one_place() -> None:
    """Finish reason, failure stage and operation state <-> the lower-case names of logs, tags and reports,
    derived from the proto descriptors; UNSPECIFIED is "" both ways, an unknown name or number is a ValueError."""
    assert vocabulary.finish_reason_name(common_pb2.FINISH_REASON_LENGTH) == "length"
    assert [vocabulary.finish_reason_value(n) for n in ("", "stop", "length")] == [0, vocabulary.FINISH_STOP,
                                                                                     vocabulary.FINISH_LENGTH]
    assert vocabulary.failure_stage_name(evaluator_pb2.FAILURE_STAGE_SYNTAX) == "syntax"
    assert vocabulary.failure_stage_value("SYNTAX") == vocabulary.failure_stage_value("syntax") == 3
    assert vocabulary.failure_stage_name(0) == "" and vocabulary.failure_stage_value("") == 0
    assert vocabulary.operation_state_name(curator_pb2.OPERATION_STATE_SUCCEEDED) == "succeeded"
    assert vocabulary.operation_state_value("CANCELLED") == curator_pb2.OPERATION_STATE_CANCELLED
    with pytest.raises(ValueError, match=r"^failure_stage: unknown 'static'; known: extract, apply, syntax"):
        vocabulary.failure_stage_value("static")
    with pytest.raises(ValueError, match=r"^finish_reason: 7 is not a value"):
        vocabulary.finish_reason_name(7)


def test_the_evaluators_stages_are_the_proto_failure_stages() -> None:
    from evaluator_svc.results import Stage

    assert {vocabulary.failure_stage_value(s.name): s.name.lower() for s in Stage} == {
        n: name for n, name in vocabulary.FAILURE_STAGES.items() if n}


def test_resolve_device() -> None:
    import torch

    assert vocabulary.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert [vocabulary.resolve_device(d) for d in ("cpu", "cuda:1")] == ["cpu", "cuda:1"]


def test_it_loads_without_torch() -> None:
    """Every service image imports it (the curator's and the generator's too), so it must not pull torch in."""
    code = ("import importlib.abc, sys\n"
            "class Refuse(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.partition('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError('blocked', name=name)\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "from deltanas import vocabulary\n"
            "print(vocabulary.MODES, vocabulary.resolve_device('cpu'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('delta', 'full') cpu"


@pytest.mark.parametrize(("what", "pattern"), [
    ("the default model", r"(?<!name=)[\"']qwen2\.5-coder-0\.5b[\"']"),  # name=: its source in deltanas.model_sources
    ("a gRPC service name", r"[\"']deltanas\.v1\.\w+Service[\"']"),
    ("the paper's temperature", r"\b0\.35\b"),
    ("device resolution", r"cuda[\"'] if torch\.cuda\.is_available\(\)"),
    ("a mode table", r"MODE_DELTA\s*:|:\s*common_pb2\.MODE_DELTA"),
    ("a candidate artifact name", r"[\"'](llm_output|candidate_diff|prompt|failure)\.txt[\"']"),
    ("the role tag", r"[\"']deltanas\.role[\"']"),
])
def test_no_value_of_the_vocabulary_is_spelled_out_elsewhere(what: str, pattern: str) -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not hits, f"{what} is written outside deltanas/vocabulary.py: {', '.join(hits)}"


def test_the_unverified_prefix_is_the_evaluators() -> None:
    """Clients read the worker's own figures under the prefix the evaluator's scoring writes (the scoring module
    imports nothing of deltanas: the sandboxed worker sees only evaluator_svc)."""
    from deltanas.vocabulary import UNVERIFIED_PREFIX
    from evaluator_svc.scoring import UNVERIFIED

    assert UNVERIFIED_PREFIX == UNVERIFIED
