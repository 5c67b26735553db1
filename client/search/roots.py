"""Roots: LEMUR baselines from the curator, in its order, each measured (its same-budget reference) before a
search generates for it; a baseline that does not learn under the budget is reported once and skipped.

    roots = LemurRoots(cfg, services.curator, references, archive, on_skip=print)
    program = roots.fresh("mnist", cycle=0, exclude=set())     # the next one that learns, or None
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from client.config import SearchConfig
from client.search.archive import Archive, Program
from client.search.references import Reference, References
from deltanas.baseline import Baseline
from deltanas.v1 import curator_pb2, curator_pb2_grpc

log = logging.getLogger("deltanas.search.roots")

PAGE = 50


class LemurRoots:
    def __init__(self, cfg: SearchConfig, curator: curator_pb2_grpc.CuratorServiceStub, references: References,
                 archive: Archive, on_skip: Callable[[Baseline, Reference], None]) -> None:
        self.cfg = cfg
        self.curator = curator
        self.references = references
        self.archive = archive
        self.on_skip = on_skip
        self._listed: dict[str, list[Baseline]] = {}
        self._total: dict[str, int] = {}

    def fresh(self, dataset: str, cycle: int, exclude: set[str]) -> Program | None:
        """The next baseline of `dataset` (curator order) not in `exclude` that learns under the budget, added to the
        archive as a root of `cycle`; None when there is none left."""
        for baseline in self._baselines(dataset):
            if baseline.name in exclude:
                continue
            if (known := self.archive.programs.get(baseline.name)) is not None and not known.reference.learns:
                continue  # measured before: it does not learn
            settings = self.cfg.settings(baseline)
            key = self.references.key(settings, baseline.code)
            reference = self.references.prepare([(baseline.name, baseline.code, settings)])[key]
            program = Program.root_of(baseline, reference, cycle)
            self.archive.add(program)
            if reference.learns or not self.cfg.skip_non_learning:
                return program
            log.warning("baseline %s does not learn under this budget (%s): skipped", baseline.name,
                        reference.failure)
            self.on_skip(baseline, reference)
        return None

    def _baselines(self, dataset: str) -> Iterator[Baseline]:
        """The curator's baselines of `dataset` (LEMUR's epoch-1 records, `baseline_names` only), fetched a page at
        a time."""
        listed = self._listed.setdefault(dataset, [])
        yield from list(listed)
        while dataset not in self._total or len(listed) < self._total[dataset]:
            page = self.curator.ListBaselines(curator_pb2.ListBaselinesRequest(
                dataset=dataset, epoch=1, limit=PAGE, offset=len(listed), names=self.cfg.baseline_names), timeout=120)
            self._total[dataset] = page.total
            if not page.total and not listed:
                raise ValueError(f"datasets: no LEMUR baseline for {dataset!r} matches baseline_names")
            if not page.baselines:
                return
            new = [Baseline.from_proto(b) for b in page.baselines]
            listed += new
            yield from new
