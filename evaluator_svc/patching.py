"""The cheap first stages, in the evaluator process (text only): EXTRACT the change from the LLM's answer and
APPLY it to the baseline.

    patched = patch_candidate("delta_answer", answer, baseline_code, finish_reason=FINISH_LENGTH)
    patched.failure or patched.code

An answer cut at max_new_tokens (finish_reason LENGTH) loses its last, unfinished line before extraction: under
constrained decoding every line boundary ends a diff that fits, so the complete lines still apply. A failure of
such an answer says that it was cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import deltadiff
from deltanas.vocabulary import FINISH_LENGTH, FINISH_UNKNOWN
from evaluator_svc.results import EvalResult, Stage


@dataclass(frozen=True)
class Patched:
    code: str  # the candidate model ("" when extraction failed)
    diff: str  # the normalized diff from the baseline ("" for a full answer or when extraction failed)
    failure: EvalResult | None  # None: go on to the sandboxed stages


def patch_candidate(kind: str, answer: str, baseline_code: str, finish_reason: int = FINISH_UNKNOWN) -> Patched:
    """`kind` "delta_answer" (`answer` holds a diff against `baseline_code`) or "code" (a whole model)."""
    if finish_reason == FINISH_LENGTH and kind == "delta_answer":
        answer = deltadiff.complete_lines(answer)  # the unfinished line of a cut answer
    patched = _extract_apply(kind, answer, baseline_code)
    if patched.failure is not None and finish_reason == FINISH_LENGTH:
        return Patched(patched.code, patched.diff, EvalResult.failure(
            patched.failure.failure_stage, "the answer was cut at the generator's max_new_tokens (finish_reason "
            f"length): {patched.failure.failure_reason}"))
    return patched


def _extract_apply(kind: str, answer: str, baseline_code: str) -> Patched:
    if kind == "code":
        try:
            code = deltadiff.extract_code(answer)
        except deltadiff.ExtractError as exc:
            return Patched("", "", EvalResult.failure(Stage.EXTRACT, str(exc)))
        if baseline_code and deltadiff.same_code(code, baseline_code):
            return Patched(code, "", EvalResult.failure(Stage.EXTRACT, "the model is the baseline unchanged"))
        return Patched(code, "", None)
    try:
        diff_text = deltadiff.extract_diff(answer)
    except deltadiff.ExtractError as exc:
        return Patched("", "", EvalResult.failure(Stage.EXTRACT, str(exc)))
    try:
        code = deltadiff.apply_diff(baseline_code, diff_text)
    except deltadiff.ApplyError as exc:
        return Patched("", diff_text, EvalResult.failure(Stage.APPLY, str(exc)))
    if deltadiff.same_code(code, baseline_code):
        return Patched(code, diff_text, EvalResult.failure(
            Stage.APPLY, "the diff changes nothing: its added lines only restore what it removed (up to comments "
            "and layout)"))
    return Patched(code, deltadiff.make_diff(baseline_code, code), None)
