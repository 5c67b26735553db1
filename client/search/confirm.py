"""Confirmation: an improved candidate (one seed against its parent's reference) gets its own reference, the
other seeds trained under the same settings (seed 0 is its evaluation already), before it becomes a parent, so a
lucky seed does not start a line; its children are then judged against it.

    gains = confirm_improved(cycle, results, archive, references, tracker, cfg, evaluated)   # {cid: mean gain}
"""

from __future__ import annotations

import logging

from client.config import SearchConfig
from client.records import CandidateResult
from client.search.archive import Archive, Program
from client.search.references import References
from client.tracking import Tracker
from deltanas.v1 import evaluator_pb2
from deltanas.vocabulary import CODE_FILE

log = logging.getLogger("deltanas.search.confirm")


def confirm_improved(cycle: int, results: list[CandidateResult], archive: Archive, references: References,
                     tracker: Tracker, cfg: SearchConfig,
                     evaluated: dict[str, evaluator_pb2.EvaluateResponse]) -> dict[str, float]:
    """Measures the improved `results` of `cycle` (the store's references are reused, so a resumed search trains
    nothing again) and adds those whose mean gain over their parent's mean still exceeds their threshold to the
    archive. Returns the mean gain of each candidate not confirmed before (also logged on its child run).
    `evaluated`: this process's evaluations by candidate id (seed 0, and the code, without a download)."""
    todo, seed0 = [], {}
    for r in results:
        if not r.improved or r.baseline not in archive.programs:
            continue
        parent = archive.programs[r.baseline]
        ev = evaluated.get(r.candidate_id)
        code = ev.patched_code if ev else tracker.read_artifact(r.run_id, CODE_FILE)
        settings = cfg.settings(parent.baseline)
        if ev is not None:
            seed0[references.key(settings, code)] = ev
        todo.append((r, parent, code, settings))
    if not todo:
        return {}
    found = references.prepare([(r.candidate_id, code, s) for r, _, code, s in todo], seed0)
    gains = {}
    for r, parent, code, settings in todo:
        ref = found[references.key(settings, code)]
        gain = 100 * (ref.mean - parent.reference.mean) if ref.learns else None
        if r.confirmed_gain is None and gain is not None:
            tracker.update_candidate(r.candidate_id, {"confirmed_gain": gain})
            gains[r.candidate_id] = gain
        if gain is not None and r.threshold is not None and gain > r.threshold:
            archive.add(Program.child(r, code, parent, ref, cycle))
            log.info("candidate %s: confirmed over %d seeds (%+.2f points, reference %s): a parent from now on",
                     r.candidate_id, len(ref.accuracies), gain, ref.describe())
        else:
            log.info("candidate %s: not confirmed over the seeds (%s, parent %s)", r.candidate_id, ref.describe(),
                     parent.reference.describe())
    return gains
