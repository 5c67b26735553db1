"""Same-budget references: the unmodified program trained exactly as its candidates are, with a few seeds.

    refs = References(tracker, pool, seeds=3, timeout_s=300)
    found = refs.prepare([("rag-5ade...", code, settings)])     # measures what the store does not hold yet
    ref = found[settings.key(code)]
    ref.learns, ref.mean, ref.spread, ref.digest                  # above chance?, accuracy, seed spread, seed 0's

A reference is measured once per (program, settings, number of seeds) and kept in the tracking store as a run with
role `reference`, so a resumed or a later search reuses it instead of training again. A candidate trains with seed
0, so it differs from its reference's seed-0 run by the change alone; the other seeds give the spread. A program
that does not beat chance with every seed "does not learn under this budget": no candidate of it could count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from client.records import ReferenceRecord
from deltanas.baseline import Budget, seed_mean, seed_spread
from deltanas.training import Settings
from deltanas.v1 import evaluator_pb2
from deltanas.vocabulary import CODE_FILE, TAG_PREFIX, UNVERIFIED_PREFIX

if TYPE_CHECKING:
    from client.tracking import Tracker
    from deltanas.evaluator_pool import EvaluatorPool

log = logging.getLogger("deltanas.search.references")

VALID = evaluator_pb2.CANDIDATE_STATUS_VALID


@dataclass(frozen=True)
class Reference:
    """A program measured under a search's settings: accuracy per seed, seed 0's predictions digest, size."""

    key: str
    program: str
    dataset: str
    accuracies: tuple[float, ...]  # seeds 0..n-1 (empty when seed 0 failed)
    digest: str  # sha256 of seed 0's predicted classes
    num_params: int = 0
    train_seconds: float = 0.0
    failure: str = ""  # why it does not learn: "seed N: stage: reason" ("" when every seed beat chance)
    seeds: int = 0
    train_images: int = 0  # per epoch

    @property
    def learns(self) -> bool:
        return not self.failure

    @property
    def mean(self) -> float:
        return seed_mean(self.accuracies)

    @property
    def spread(self) -> float:
        """Standard deviation of the accuracy over the seeds (0 with one seed)."""
        return seed_spread(self.accuracies)

    def budget(self) -> Budget:
        """The prompt's facts about this program."""
        return Budget.over_seeds(self.accuracies, self.train_images, self.num_params, self.train_seconds)

    def describe(self) -> str:
        if not self.learns:
            return f"does not learn under this budget ({self.failure})"
        return f"{self.mean:.4f} ± {self.spread:.4f} over {len(self.accuracies)} seeds"

    def to_record(self, settings: Settings, code: str) -> ReferenceRecord:
        metrics = {"accuracy_mean": self.mean, "accuracy_spread": self.spread, "num_params": self.num_params,
                   "train_seconds": self.train_seconds, "train_images": self.train_images,
                   **{f"accuracy_seed{i}": a for i, a in enumerate(self.accuracies)}}
        tags = {"program": self.program, "dataset": self.dataset, "learns": str(self.learns).lower(),
                "predictions_digest": self.digest, "failure": self.failure[:1000]}
        return ReferenceRecord(self.key, f"reference-{self.program[:40]}-{self.key[:8]}",
                               {**settings.params(), "program": self.program, "seeds": self.seeds}, metrics,
                               {f"{TAG_PREFIX}{k}": v for k, v in tags.items()}, {CODE_FILE: code})

    @classmethod
    def from_record(cls, record: ReferenceRecord) -> Reference:
        tags = {k.removeprefix(TAG_PREFIX): v for k, v in record.tags.items()}
        seeds = int(record.params.get("seeds", 0))
        accuracies = tuple(record.metrics[f"accuracy_seed{i}"] for i in range(seeds)
                           if f"accuracy_seed{i}" in record.metrics)
        return cls(record.key, tags.get("program", ""), tags.get("dataset", ""), accuracies,
                   tags.get("predictions_digest", ""), int(record.metrics.get("num_params", 0)),
                   record.metrics.get("train_seconds", 0.0), tags.get("failure", ""), seeds,
                   int(record.metrics.get("train_images", 0)))


def reference_key(settings: Settings, code: str, seeds: int) -> str:
    return f"{settings.key(code)}-s{seeds}"


class References:
    """Measures and remembers references; every measurement goes to the tracking store once."""

    def __init__(self, tracker: Tracker, pool: EvaluatorPool, seeds: int, timeout_s: float) -> None:
        self.tracker = tracker
        self.pool = pool
        self.seeds = seeds
        self.timeout_s = timeout_s
        self._known: dict[str, Reference] = {}

    def key(self, settings: Settings, code: str) -> str:
        return reference_key(settings, code, self.seeds)

    def known(self, key: str) -> Reference | None:
        """The reference under `key` if this search or the store holds it (no training)."""
        if key not in self._known and (record := self.tracker.find_reference(key)) is not None:
            self._known[key] = Reference.from_record(record)
        return self._known.get(key)

    def prepare(self, programs: Iterable[tuple[str, str, Settings]],
                seed0: dict[str, evaluator_pb2.EvaluateResponse] | None = None) -> dict[str, Reference]:
        """The references of `programs` (name, code, settings), measuring those not known yet, all seeds at once
        over the evaluator pool. `seed0` gives, per key, an evaluation already made with seed 0 (an improved
        candidate's own), so only the other seeds train."""
        seed0 = seed0 or {}
        out: dict[str, Reference] = {}
        pending: dict[str, tuple[str, str, Settings, dict[int, Future]]] = {}
        for name, code, settings in programs:
            key = self.key(settings, code)
            if (ref := self.known(key)) is not None:
                out[key] = ref
            elif key not in pending:
                first = 1 if key in seed0 else 0
                log.info("reference %s: training %s with %d seed(s) under the candidates' settings", key[:12], name,
                         self.seeds - first)
                futures = {seed: self.pool.submit(settings.request(
                    f"ref/{key}/{seed}", f"ref-{key[:12]}-s{seed}", seed=seed, timeout_s=self.timeout_s, code=code))
                    for seed in range(first, self.seeds)}
                _cancel_siblings_on_failure(list(futures.values()))
                pending[key] = (name, code, settings, futures)
        for key, (name, code, settings, futures) in pending.items():
            replies = {seed: f.result() for seed, f in futures.items() if not f.cancelled()}
            if key in seed0:
                replies[0] = seed0[key]
            ref = self._reference(key, name, settings, replies)
            self.tracker.log_reference(ref.to_record(settings, code))
            log.info("reference %s: %s %s", key[:12], name, ref.describe())
            self._known[key] = out[key] = ref
        return out

    @staticmethod
    def _reference(key: str, name: str, settings: Settings,
                   replies: dict[int, evaluator_pb2.EvaluateResponse]) -> Reference:
        failure = next((f"seed {seed}: {_stage(r)}: {r.failure_reason[:300]}" for seed, r in sorted(replies.items())
                        if r.status != VALID), "")
        first = replies[min(replies)]  # seed 0, unless a failed seed cancelled it before it started
        accuracies = tuple(replies[s].accuracy for s in sorted(replies)) if not failure else ()
        worker = {k.removeprefix(UNVERIFIED_PREFIX): v for k, v in first.metrics.items()}  # prompt facts only
        images = settings.train_limit or int(worker.get("train_samples", 0) / settings.epochs)
        return Reference(key, name, settings.dataset, accuracies, first.predictions_digest,
                         int(worker.get("num_params", 0)), worker.get("train_seconds", 0.0), failure, len(replies),
                         images)


def _cancel_siblings_on_failure(futures: list[Future]) -> None:
    """Once one seed fails the program cannot learn under this budget: seeds still queued are not trained."""
    def settled(done: Future) -> None:
        if not done.cancelled() and done.exception() is None and done.result().status != VALID:
            for other in futures:
                other.cancel()
    for future in futures:
        future.add_done_callback(settled)


def _stage(reply: evaluator_pb2.EvaluateResponse) -> str:
    return evaluator_pb2.FailureStage.Name(reply.failure_stage).removeprefix("FAILURE_STAGE_").lower()
