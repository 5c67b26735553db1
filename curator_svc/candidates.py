"""Candidates a search accepted into the curator's corpus: an append-only JSONL store, and the pairs they make.

    store = CandidateStore(state_dir / CANDIDATES_FILE)
    store.add({"candidate_id": "s/0/ResNet/delta/1", "baseline": {...}, "code": "...", "accuracy": 0.31})
    candidate_pairs(store.records)   # [(the program it changed, the candidate), ...]
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import replace
from pathlib import Path

from curator_svc.pairing import Pair, make_pair
from deltanas.baseline import Baseline, Budget

log = logging.getLogger(__name__)

CANDIDATES_FILE = "candidates.jsonl"


class CandidateStore:
    """Accepted candidates, appended to a JSONL file with fsync so that none is lost (a line cut by a crash
    mid-write is skipped at the next start, with a warning: its call never answered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.records: dict[str, dict] = {}
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    record = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    log.warning("%s line %d is not a complete record (cut by a crash?); skipped", path, number)
                    continue
                if record is not None:
                    self.records[record["candidate_id"]] = record

    def snapshot(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self.records.items())

    def add(self, record: dict) -> bool:
        with self._lock:
            if record["candidate_id"] in self.records:
                return False
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.records[record["candidate_id"]] = record
            return True


def candidate_pairs(records: dict[str, dict]) -> list[Pair]:
    """Accepted candidates (a CandidateStore's records) as training pairs: (the program it changed, the candidate);
    a search's measured one states its parent's measured facts and carries its gain."""
    pairs = []
    for cid, record in records.items():
        baseline = Baseline(**record["baseline"])
        improved = Baseline(**{**record["baseline"], "name": cid, "code": record["code"],
                               "accuracy": record["accuracy"]})
        pair = make_pair(baseline, improved)
        if "budget" in record:
            pair = replace(pair, budget=Budget(**record["budget"]), measured_gain=record["gain"])
        pairs.append(pair)
    return pairs
