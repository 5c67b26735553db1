"""A candidate on its way through the loop: the parent and mode it is asked for (`Unit`), where its answer goes
(`Position`), what its evaluation carries along (`Submitted`), the record it becomes (`record_of`) and the
fingerprint of the program its answer makes.

    key = program_key(gen, "delta", parent_code)     # "" when the answer does not extract or apply
    result = record_of(sub, model, constrained, lemur_accuracy)    # then filled in by the evaluation
"""

from __future__ import annotations

from dataclasses import dataclass, field

import deltadiff
from client.records import CandidateResult
from client.search.archive import Program
from deltanas.v1 import generator_pb2
from deltanas.vocabulary import FINISH_LENGTH, finish_reason_name


@dataclass
class Position:
    """Where a generated answer goes: its candidate id, index, attempt (0: first, n: n-th repair) and how many of
    its answers were dropped as duplicates."""

    cid: str
    index: int
    attempt: int = 0
    repaired_from: str = ""
    resamples: int = 0


@dataclass
class Unit:
    """One parent and mode of a cycle, with its number of candidates and the programs dispatched so far."""

    parent: Program
    mode: str
    count: int
    dispatched: dict[str, str] = field(default_factory=dict)  # code key -> candidate id (this cycle)


@dataclass(frozen=True)
class Submitted:
    """An evaluation on its way: what the candidate's record needs besides the evaluator's reply."""

    cycle: int
    position: Position
    parent: Program
    mode: str
    gen: generator_pb2.GenerateResponse
    adapter: str
    started_ms: int
    prompt: str
    code_key: str


def record_of(sub: Submitted, model: str, constrained: bool, lemur_accuracy: float) -> CandidateResult:
    """The candidate's record before its evaluation: what was asked and what the LLM answered, against which
    reference it will be judged (`lemur_accuracy`: the root's LEMUR record, context only)."""
    parent, gen, ref = sub.parent, sub.gen, sub.parent.reference
    b = parent.baseline
    return CandidateResult(
        candidate_id=sub.position.cid, cycle=sub.cycle, baseline=parent.id, dataset=b.dataset, mode=sub.mode,
        index=sub.position.index, status="invalid", failure_stage="", failure_reason="", accuracy=0.0,
        lemur_accuracy=lemur_accuracy, diff_lines=0, output_tokens=gen.output_tokens, output_lines=gen.output_lines,
        generation_s=gen.latency_s, evaluation_s=0.0, attempt=sub.position.attempt,
        repaired_from=sub.position.repaired_from,
        model=model, adapter=sub.adapter or "base", seed=gen.seed, batch=b.batch, transform=b.transform,
        hyperparameters=dict(b.hyperparameters), prompt_tokens=gen.prompt_tokens,
        tokens_per_second=gen.tokens_per_second, forced_tokens=gen.forced_tokens,
        finish_reason=finish_reason_name(gen.finish_reason),
        constrained=constrained and sub.mode == "delta", reference_accuracy=ref.mean, reference_spread=ref.spread,
        root=parent.root, generation=parent.generation + 1, resamples=sub.position.resamples,
        parse_resamples=gen.parse_resamples)


def program_key(gen: generator_pb2.GenerateResponse, mode: str, parent_code: str) -> str:
    """The fingerprint of the program an answer makes of its parent ("" when it does not extract or apply: the
    evaluator then says why, at no training cost)."""
    try:
        code = deltadiff.answer_program(gen.raw_text, parent_code, delta=mode == "delta",
                                        cut=gen.finish_reason == FINISH_LENGTH)
    except deltadiff.DiffError:
        return ""
    return deltadiff.code_fingerprint(code)


