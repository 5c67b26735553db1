"""Selection policies: which programs each cycle changes, one registry entry per policy.

    policy = make_selection("evolve", cfg)
    parents = policy.parents(cycle, "mnist", n=2, archive=archive, roots=roots)   # may repeat a program

`paging` is the paper's protocol: every cycle takes the next LEMUR baselines (that learn under the budget), so a
candidate never becomes a parent. `evolve` climbs: after the first cycle it draws parents from the archive by
fitness (the same-budget reference's accuracy), per dataset (islands: accuracies compare only within a dataset):
the island's best program first (elitism) unless it was visited `evolve_patience` times without an improvement,
then draws by a power law over the fitness rank, weighted up by novelty and down by fruitless visits, and with
probability `evolve_exploration` a fresh LEMUR baseline instead. Draws are deterministic for a seed, cycle and
dataset, so a resumed search draws the same parents.

A policy is a class registered under a name (`register_selection`); `SearchConfig.selection` names one.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Protocol

from client.search.archive import Archive, Program
from client.search.ids import derive_seed

if TYPE_CHECKING:
    from client.config import SearchConfig


class Roots(Protocol):
    """Fresh LEMUR baselines, in the curator's order, measured and added to the archive as roots."""

    def fresh(self, dataset: str, cycle: int, exclude: set[str]) -> Program | None:
        """The next baseline of `dataset` not in `exclude` that learns under the budget, or None."""


class Selection(ABC):
    """Draws the parents of one cycle for one dataset (an island)."""

    name: ClassVar[str]

    def __init__(self, cfg: SearchConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def parents(self, cycle: int, dataset: str, n: int, archive: Archive, roots: Roots) -> list[Program]:
        """`n` parents (a program may appear more than once: it then gets that many times the candidates)."""

    @staticmethod
    def _fresh_or_reuse(cycle: int, dataset: str, n: int, archive: Archive, roots: Roots) -> list[Program]:
        """`n` fresh roots; when the curator has no more that learn, the known roots, least visited first."""
        chosen: list[Program] = []
        used = {p.id for p in archive.roots(dataset) if p.cycle < cycle}
        while len(chosen) < n:
            fresh = roots.fresh(dataset, cycle, used | {p.id for p in chosen})
            if fresh is None:
                break
            chosen.append(fresh)
        known = sorted((p for p in archive.roots(dataset) if p.reference.learns and p not in chosen),
                       key=lambda p: sum(r.cycle < cycle for r in archive.results.get(p.id, [])))
        while len(chosen) < n and known:
            chosen += known[: n - len(chosen)]
        return chosen


class Paging(Selection):
    """Fresh LEMUR baselines every cycle (the paper's protocol)."""

    name = "paging"

    def parents(self, cycle: int, dataset: str, n: int, archive: Archive, roots: Roots) -> list[Program]:
        return self._fresh_or_reuse(cycle, dataset, n, archive, roots)


class Evolve(Selection):
    """Fitness- and novelty-driven draws from the archive, one island per dataset, with elitism and exploration."""

    name = "evolve"

    def parents(self, cycle: int, dataset: str, n: int, archive: Archive, roots: Roots) -> list[Program]:
        pool = sorted(archive.parents(dataset, cycle), key=lambda p: (-p.fitness, p.id))
        if not pool:
            return self._fresh_or_reuse(cycle, dataset, n, archive, roots)
        cfg = self.cfg
        rng = random.Random(derive_seed(cfg.seed, "evolve", cycle, dataset))
        chosen: list[Program] = []
        if archive.fruitless_visits(pool[0].id, cycle) < cfg.evolve_patience:
            chosen.append(pool[0])
        exhausted = False
        while len(chosen) < n:
            if not exhausted and rng.random() < cfg.evolve_exploration:
                known = {p.id for p in archive.roots(dataset) if p.cycle < cycle} | {p.id for p in chosen}
                if (fresh := roots.fresh(dataset, cycle, known)) is not None:
                    chosen.append(fresh)
                    continue
                exhausted = True
            left = [p for p in pool if p not in chosen] or pool  # a small island: a program may be drawn again
            chosen.append(rng.choices(left, weights=[self.weight(p, rank, archive, cycle)
                                                     for rank, p in enumerate(left)])[0])
        return chosen

    def weight(self, program: Program, rank: int, archive: Archive, cycle: int) -> float:
        """Power law over the fitness rank (1 / (rank + 1)), times (1 + novelty weight x novelty), times
        evolve_decay per visit that brought no improvement."""
        cfg = self.cfg
        return ((1 + cfg.evolve_novelty * program.novelty) / (rank + 1)
                * cfg.evolve_decay ** archive.fruitless_visits(program.id, cycle))


SELECTIONS: dict[str, type[Selection]] = {}


def register_selection(policy: type[Selection]) -> type[Selection]:
    """Adds a policy under its `name`; a name is registered once."""
    if policy.name in SELECTIONS:
        raise ValueError(f"selection: {policy.name!r} is already registered")
    SELECTIONS[policy.name] = policy
    return policy


for _policy in (Paging, Evolve):
    register_selection(_policy)


def make_selection(name: str, cfg: SearchConfig) -> Selection:
    if name not in SELECTIONS:
        raise ValueError(f"selection: unknown policy {name!r}; known: {', '.join(SELECTIONS)}")
    return SELECTIONS[name](cfg)
