"""What a candidate's evaluation means against its parent's same-budget reference.

    j = judge(valid=True, accuracy=0.36, digest=d, reference=ref, rule=NoiseRule(2.0, 1.0))
    j.outcome, j.gain            # Outcome.IMPROVED, 4.3 (points)

A valid candidate trained with its reference's seed 0 has *no effect* when it predicts exactly what the reference
predicted with seed 0 (gain 0: it is that training again, whatever seed 0 scored against the mean); otherwise its
gain (accuracy points over the reference's mean) is *improved* above the rule's threshold (max(spread factor x the
reference's seed spread, a floor in points)), *worse* below minus that threshold, and *within noise* between.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from client.search.references import Reference


class Outcome(enum.StrEnum):
    INVALID = "invalid"  # failed a stage of the evaluator's cascade
    DUPLICATE = "duplicate"  # the same program as one already evaluated on this parent: not evaluated again
    NO_EFFECT = "no_effect"  # the reference's predictions exactly
    WORSE = "worse"
    WITHIN_NOISE = "within_noise"
    IMPROVED = "improved"

    @property
    def effective(self) -> bool:
        """A valid candidate that changed what the model predicts."""
        return self in (Outcome.WORSE, Outcome.WITHIN_NOISE, Outcome.IMPROVED)


@dataclass(frozen=True)
class NoiseRule:
    """When a gain counts: above max(`spread_factor` x seed spread, `min_points`) accuracy points."""

    spread_factor: float = 2.0
    min_points: float = 1.0

    def threshold(self, reference: Reference) -> float:
        """The gain in points a candidate of `reference` must exceed to be improved."""
        return max(self.spread_factor * 100 * reference.spread, self.min_points)


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    gain: float | None = None  # accuracy points over the reference's mean (valid candidates)
    threshold: float | None = None  # the gain that would have counted, in points


def judge(valid: bool, accuracy: float, digest: str, reference: Reference, rule: NoiseRule) -> Judgement:
    """The outcome of a candidate evaluated with seed 0 against the reference of the program it changed."""
    if not valid:
        return Judgement(Outcome.INVALID)
    gain = 100 * (accuracy - reference.mean)
    threshold = rule.threshold(reference)
    if digest and digest == reference.digest:
        return Judgement(Outcome.NO_EFFECT, 0.0, threshold)
    if gain > threshold:
        outcome = Outcome.IMPROVED
    elif gain < -threshold:
        outcome = Outcome.WORSE
    else:
        outcome = Outcome.WITHIN_NOISE
    return Judgement(outcome, gain, threshold)


def describe(outcome: str, gain: float | None, failure: str = "") -> str:
    """The outcome in a few words, for prompts and tables: "no effect", "+4.3 points", "worse (-5.8 points)"."""
    if outcome == Outcome.INVALID:
        return f"invalid ({failure})" if failure else "invalid"
    if outcome == Outcome.DUPLICATE:
        return "duplicate of an earlier candidate"
    if outcome == Outcome.NO_EFFECT:
        return "no effect (the same predictions)"
    words = {Outcome.IMPROVED: "improved", Outcome.WORSE: "worse", Outcome.WITHIN_NOISE: "within noise"}
    return f"{words.get(Outcome(outcome), outcome)} ({gain:+.1f} points)" if gain is not None else outcome
