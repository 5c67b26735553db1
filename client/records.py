"""The data a search produces, with no I/O: one shape per candidate (`CandidateResult`, how it is logged as an
MLflow child run and how it is read back), the records the Tracker writes, and a search's result and progress.

    record = result.to_record(artifacts, start_ms)      # what Tracker.log_candidate writes
    result = CandidateResult.from_run(run)              # what the report, resume, repair and re-training read

A metric, param or tag of a candidate is named here and nowhere else: adding one means a field, a line in
`to_record` and one in `from_run`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deltanas.vocabulary import CANDIDATE_TAG, MODES, TAG_PREFIX

HP_PREFIX, EVAL_PREFIX = "hp_", "eval_"  # params of the baseline's hyperparameters, metrics of the evaluator


@dataclass
class CandidateRecord:
    """Everything logged for one candidate."""

    candidate_id: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: dict[str, str]
    start_ms: int | None = None  # when its generation started (the run's start time); None: when it is logged


@dataclass
class ReferenceRecord:
    """A same-budget reference (client.search.references): a run of role `reference`, found again by its key."""

    key: str
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: dict[str, str]


@dataclass
class CandidateResult:
    """One evaluated candidate. `accuracy` and `novelty_jaccard` are 0 unless it is valid (and then not logged).

    `baseline` is the program the change applies to (a LEMUR baseline, or an earlier candidate when the search
    climbs), `root` the LEMUR baseline its line started from. `outcome` says what the change did against the
    parent's same-budget reference (client.search.outcomes); `lemur_accuracy` is only the root's accuracy as LEMUR
    recorded it under LEMUR's own budget, context and never a yardstick."""

    candidate_id: str
    cycle: int
    baseline: str
    dataset: str
    mode: str
    index: int
    status: str  # valid | invalid | duplicate (the same program as one evaluated on this parent: not evaluated)
    failure_stage: str  # "" when valid
    failure_reason: str
    accuracy: float
    lemur_accuracy: float
    diff_lines: int
    output_tokens: int
    output_lines: int
    generation_s: float
    evaluation_s: float
    novelty_jaccard: float = 0.0
    accepted: bool = False
    attempt: int = 0
    repaired_from: str = ""
    model: str = ""
    adapter: str = "base"
    seed: int = 0
    batch: int = 0
    transform: str = ""
    worker: str = ""
    hyperparameters: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    tokens_per_second: float = 0.0
    forced_tokens: int = 0
    finish_reason: str = ""
    constrained: bool = False
    nearest_model: str = ""
    eval_metrics: dict[str, float] = field(default_factory=dict)
    accuracy_long: float | None = None  # after re-training for `long_epochs`
    long_epochs: int | None = None
    outcome: str = ""  # client.search.outcomes.Outcome
    gain: float | None = None  # accuracy points over the reference's mean (valid candidates)
    threshold: float | None = None  # the gain that counts as improved, in points
    reference_accuracy: float | None = None  # the parent's same-budget reference: mean and spread over its seeds
    reference_spread: float | None = None
    root: str = ""
    generation: int = 1
    change: str = ""  # the change in one line (deltadiff.change_summary)
    code_key: str = ""  # deltadiff.code_fingerprint of the patched program
    predictions_digest: str = ""
    resamples: int = 0  # answers dropped as duplicates before this one
    parse_resamples: int = 0  # answers the generator dropped before this one: their file did not parse
    confirmed_gain: float | None = None  # improved ones: mean gain over the reference's seeds, measured afterwards
    run_id: str = ""  # its child run, once read back from the store

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def improved(self) -> bool:
        return self.outcome == "improved"

    @property
    def confirmed(self) -> bool:
        """Improved, and still improved on the mean of the reference's seeds (a parent from now on)."""
        return self.improved and self.confirmed_gain is not None and self.threshold is not None and \
            self.confirmed_gain > self.threshold

    def to_record(self, artifacts: dict[str, str], start_ms: int | None = None) -> CandidateRecord:
        """The child run: params say what was tried, metrics what came out, tags how it ended."""
        valid = self.valid
        params = {"baseline": self.baseline, "dataset": self.dataset, "mode": self.mode, "model": self.model,
                  "adapter": self.adapter, "cycle": self.cycle, "index": self.index, "seed": self.seed,
                  "batch": self.batch, "transform": self.transform, "worker": self.worker,
                  **({"repaired_from": self.repaired_from} if self.repaired_from else {}),
                  **({"long_epochs": self.long_epochs} if self.long_epochs else {}),
                  **{f"{HP_PREFIX}{k}": v for k, v in self.hyperparameters.items()}}
        metrics = {"valid": float(valid), "accuracy": self.accuracy if valid else None,  # None: not logged
                   "lemur_accuracy": self.lemur_accuracy, "prompt_tokens": self.prompt_tokens,
                   "gain": self.gain, "threshold": self.threshold, "reference_accuracy": self.reference_accuracy,
                   "reference_spread": self.reference_spread, "improved": float(self.improved),
                   "resamples": self.resamples, "parse_resamples": self.parse_resamples,
                   "confirmed_gain": self.confirmed_gain,
                   "output_tokens": self.output_tokens, "output_lines": self.output_lines,
                   "diff_lines": self.diff_lines, "generation_s": self.generation_s,
                   "tokens_per_second": self.tokens_per_second, "evaluation_s": self.evaluation_s,
                   "novelty_jaccard": self.novelty_jaccard if valid else None, "accepted": float(self.accepted),
                   "forced_tokens": self.forced_tokens, "accuracy_long": self.accuracy_long,
                   **{f"{EVAL_PREFIX}{k}": v for k, v in self.eval_metrics.items()}}
        tags = {"status": self.status, "failure_stage": self.failure_stage or "none",  # mode, dataset: params
                "nearest_model": self.nearest_model, "attempt": str(self.attempt),
                "finish_reason": self.finish_reason, "constrained": str(self.constrained).lower(),
                "outcome": self.outcome, "parent": self.baseline, "root": self.root, "generation": str(self.generation),
                "change": self.change[:500],
                "code_key": self.code_key, "predictions_digest": self.predictions_digest,
                **({"failure_reason": self.failure_reason[:1000]} if not valid else {})}
        return CandidateRecord(self.candidate_id, params, {k: v for k, v in metrics.items() if v is not None},
                               {f"{TAG_PREFIX}{k}": v for k, v in tags.items()}, artifacts, start_ms)

    @classmethod
    def from_run(cls, run: Any) -> CandidateResult:
        """A child run read back (the failure reason as its tag holds it: the first 1000 characters)."""
        params, metrics = run.data.params, run.data.metrics
        # Tags by their bare name; a store written before tags were namespaced holds them without the prefix.
        tags = {**run.data.tags, **{k.removeprefix(TAG_PREFIX): v for k, v in run.data.tags.items()}}
        valid = metrics.get("valid") == 1.0
        stage = tags.get("failure_stage", "")
        long_epochs = params.get("long_epochs")
        return cls(
            candidate_id=run.data.tags.get(CANDIDATE_TAG, ""), cycle=int(params.get("cycle", 0)),
            baseline=params.get("baseline", ""), dataset=params.get("dataset", "?"), mode=params.get("mode", "?"),
            index=int(params.get("index", 0)), status=tags.get("status") or ("valid" if valid else "invalid"),
            failure_stage="" if valid else stage if stage not in ("", "none") else "unknown",
            failure_reason=tags.get("failure_reason", ""), accuracy=metrics.get("accuracy", 0.0),
            lemur_accuracy=metrics.get("lemur_accuracy", metrics.get("baseline_accuracy", 0.0)),  # older stores
            diff_lines=int(metrics.get("diff_lines", 0)),
            output_tokens=int(metrics.get("output_tokens", 0)), output_lines=int(metrics.get("output_lines", 0)),
            generation_s=metrics.get("generation_s", 0.0), evaluation_s=metrics.get("evaluation_s", 0.0),
            novelty_jaccard=metrics.get("novelty_jaccard", 0.0), accepted=metrics.get("accepted") == 1.0,
            attempt=int(tags.get("attempt", 0)), repaired_from=params.get("repaired_from", ""),
            model=params.get("model", ""), adapter=params.get("adapter", "base"), seed=int(params.get("seed", 0)),
            batch=int(params.get("batch", 0)), transform=params.get("transform", ""),
            worker=params.get("worker", ""),
            hyperparameters={k.removeprefix(HP_PREFIX): float(v) for k, v in params.items()
                             if k.startswith(HP_PREFIX)},
            prompt_tokens=int(metrics.get("prompt_tokens", 0)), tokens_per_second=metrics.get("tokens_per_second", 0.0),
            forced_tokens=int(metrics.get("forced_tokens", 0)), finish_reason=tags.get("finish_reason", ""),
            constrained=tags.get("constrained") == "true", nearest_model=tags.get("nearest_model", ""),
            eval_metrics={k.removeprefix(EVAL_PREFIX): v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)},
            accuracy_long=metrics.get("accuracy_long"), long_epochs=int(long_epochs) if long_epochs else None,
            outcome=tags.get("outcome", ""), gain=metrics.get("gain"), threshold=metrics.get("threshold"),
            reference_accuracy=metrics.get("reference_accuracy"), reference_spread=metrics.get("reference_spread"),
            root=tags.get("root") or params.get("baseline", ""), generation=int(tags.get("generation", 1)),
            change=tags.get("change", ""), code_key=tags.get("code_key", ""),
            predictions_digest=tags.get("predictions_digest", ""), resamples=int(metrics.get("resamples", 0)),
            parse_resamples=int(metrics.get("parse_resamples", 0)),
            confirmed_gain=metrics.get("confirmed_gain"), run_id=run.info.run_id)


@dataclass
class SearchResult:
    search_id: str
    run_id: str
    results: list[CandidateResult] = field(default_factory=list)
    skipped: int = 0  # candidates already recorded (a resumed search)
    skipped_baselines: list[str] = field(default_factory=list)  # "name: why" of those that do not learn


@dataclass(frozen=True)
class SearchProgress:
    """Where the search stands: candidates asked of the LLM and not yet answered (with the tokens written so far,
    where the generator reports them), answered and being evaluated, done (logged, or skipped on resume: already
    recorded), valid and improved among the done, of `total` planned; the best gain so far (accuracy points over
    the same-budget reference; None before a valid candidate)."""

    total: int
    generating: int = 0
    evaluating: int = 0
    done: int = 0
    skipped: int = 0
    valid: int = 0
    tokens: int = 0
    improved: int = 0
    best_gain: float | None = None


def modes_of(candidates: Iterable[CandidateResult]) -> list[str]:
    """The generation modes among `candidates`: delta, full (in that order), then any other."""
    found = {c.mode for c in candidates}
    return [m for m in MODES if m in found] + sorted(found - set(MODES))
