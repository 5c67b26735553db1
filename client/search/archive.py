"""The archive of evaluated programs: roots (LEMUR baselines with their references) and every evaluated candidate,
with lineage, from which a selection policy draws the next parents.

    archive.add(Program.root(baseline, reference, cycle))
    archive.record(result)                      # a candidate evaluated on one of the programs
    archive.add(Program.child(result, code, parent, reference, cycle))   # an improved candidate, confirmed
    archive.parents("mnist", cycle)             # what may be a parent at `cycle`: programs that learn
    archive.tried(parent_id, 8)                 # what was tried on it, for the prompt
    archive.seen(parent_id)                     # code keys already evaluated on it (dedup)

The search rebuilds it the same way on every (re)start: after each cycle it records that cycle's candidates as the
tracking store holds them, and references come from the store's cache, so a resumed search draws the same parents.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from client.records import CandidateResult
from client.search.outcomes import Outcome, describe
from client.search.references import Reference
from deltadiff import code_fingerprint
from deltanas.baseline import Baseline
from deltanas.prompts import Tried


@dataclass(frozen=True)
class Program:
    """A model a search may change: its code and training settings (`baseline`, named by the program id), its
    place in the lineage and its same-budget reference (fitness = the reference's mean accuracy)."""

    baseline: Baseline
    root: str
    reference: Reference
    cycle: int  # the first cycle it may be a parent in
    parent: str = ""
    generation: int = 0
    novelty: float = 0.0  # 1 - MinHash-Jaccard to the nearest known model (0 for LEMUR's own)

    @property
    def id(self) -> str:
        return self.baseline.name

    @property
    def fitness(self) -> float:
        return self.reference.mean

    @classmethod
    def root_of(cls, baseline: Baseline, reference: Reference, cycle: int) -> Program:
        return cls(baseline, baseline.name, reference, cycle)

    @classmethod
    def child(cls, result: CandidateResult, code: str, parent: Program, reference: Reference, cycle: int) -> Program:
        """An improved candidate as a program: its parent's settings with its own code and reference."""
        baseline = replace(parent.baseline, name=result.candidate_id, code=code, accuracy=reference.mean)
        return cls(baseline, parent.root, reference, cycle, parent.id, parent.generation + 1,
                   max(0.0, 1.0 - result.novelty_jaccard))


class Archive:
    def __init__(self) -> None:
        self.programs: dict[str, Program] = {}
        self.results: dict[str, list[CandidateResult]] = defaultdict(list)  # parent id -> its candidates
        self._ids: set[str] = set()

    def add(self, program: Program) -> None:
        self.programs.setdefault(program.id, program)

    def record(self, result: CandidateResult) -> None:
        """A candidate evaluated on the program `result.baseline` (each candidate once)."""
        if result.candidate_id not in self._ids:
            self._ids.add(result.candidate_id)
            self.results[result.baseline].append(result)

    def parents(self, dataset: str, cycle: int) -> list[Program]:
        """Programs of `dataset` that may be parents at `cycle`: they learn under the budget and were there before."""
        return [p for p in self.programs.values()
                if p.baseline.dataset == dataset and p.cycle < cycle and p.reference.learns]

    def roots(self, dataset: str) -> list[Program]:
        return [p for p in self.programs.values() if p.baseline.dataset == dataset and not p.parent]

    def tried(self, parent: str, limit: int) -> list[Tried]:
        """The latest `limit` changes evaluated on `parent` and what came of them."""
        done = [r for r in self.results.get(parent, []) if r.change and r.outcome != Outcome.DUPLICATE]
        done.sort(key=lambda r: (r.cycle, r.candidate_id))
        failure = lambda r: f"{r.failure_stage}: {r.failure_reason.splitlines()[0][:80]}" if r.failure_reason else ""  # noqa: E731
        return [Tried(r.change, describe(r.outcome, r.gain, failure(r))) for r in done[-limit:]] if limit else []

    def seen(self, parent: Program) -> dict[str, str]:
        """Fingerprints of the programs already evaluated on `parent` (the parent's own included: a change that
        changes nothing) -> the candidate (or parent) id that has it."""
        out = {code_fingerprint(parent.baseline.code): parent.id}
        for r in self.results.get(parent.id, []):
            if r.code_key and r.outcome != Outcome.DUPLICATE:
                out.setdefault(r.code_key, r.candidate_id)
        return out

    def fruitless_visits(self, parent: str, cycle: int) -> int:
        """Cycles before `cycle` in which `parent` got candidates and none of them improved."""
        by_cycle: dict[int, bool] = {}
        for r in self.results.get(parent, []):
            if r.cycle < cycle:
                by_cycle[r.cycle] = by_cycle.get(r.cycle, False) or r.improved
        return sum(not improved for improved in by_cycle.values())
