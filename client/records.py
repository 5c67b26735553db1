"""One shape per candidate: `CandidateResult`, how it is logged as an MLflow child run and how it is read back.

    record = result.to_record(artifacts, start_ms)      # what Tracker.log_candidate writes
    result = CandidateResult.from_run(run)              # what the report, resume, repair and re-training read

A metric, param or tag of a candidate is named here and nowhere else: adding one means a field, a line in
`to_record` and one in `from_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client.tracking import CandidateRecord
from deltanas.vocabulary import CANDIDATE_TAG, TAG_PREFIX

HP_PREFIX, EVAL_PREFIX = "hp_", "eval_"  # params of the baseline's hyperparameters, metrics of the evaluator


@dataclass
class CandidateResult:
    """One evaluated candidate. `accuracy` and `novelty_jaccard` are 0 unless it is valid (and then not logged)."""

    candidate_id: str
    cycle: int
    baseline: str
    dataset: str
    mode: str
    index: int
    status: str  # valid | invalid
    failure_stage: str  # "" when valid
    failure_reason: str
    accuracy: float
    baseline_accuracy: float
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
    run_id: str = ""  # its child run, once read back from the store

    @property
    def valid(self) -> bool:
        return self.status == "valid"

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
                   "baseline_accuracy": self.baseline_accuracy, "prompt_tokens": self.prompt_tokens,
                   "output_tokens": self.output_tokens, "output_lines": self.output_lines,
                   "diff_lines": self.diff_lines, "generation_s": self.generation_s,
                   "tokens_per_second": self.tokens_per_second, "evaluation_s": self.evaluation_s,
                   "novelty_jaccard": self.novelty_jaccard if valid else None, "accepted": float(self.accepted),
                   "forced_tokens": self.forced_tokens, "accuracy_long": self.accuracy_long,
                   **{f"{EVAL_PREFIX}{k}": v for k, v in self.eval_metrics.items()}}
        tags = {"status": self.status, "failure_stage": self.failure_stage or "none",  # mode, dataset: params
                "nearest_model": self.nearest_model, "attempt": str(self.attempt),
                "finish_reason": self.finish_reason, "constrained": str(self.constrained).lower(),
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
            index=int(params.get("index", 0)), status="valid" if valid else "invalid",
            failure_stage="" if valid else stage if stage not in ("", "none") else "unknown",
            failure_reason=tags.get("failure_reason", ""), accuracy=metrics.get("accuracy", 0.0),
            baseline_accuracy=metrics.get("baseline_accuracy", 0.0), diff_lines=int(metrics.get("diff_lines", 0)),
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
            run_id=run.info.run_id)
