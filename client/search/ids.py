"""Deterministic names and seeds of a search, and the lineage tags of its programs.

    cid = candidate_id(search_id, cycle, parent, mode, index)   # the same search position, the same id
    repair = repair_id(cid, attempt)
    seed = derive_seed(base_seed, cycle, parent)                 # the generator's seed for that parent and cycle

A program is a LEMUR baseline (a root, named by its LEMUR name) or an evaluated candidate (named by its candidate
id); a candidate's parent is the program its diff applies to, its root the LEMUR baseline its line started from,
its generation the number of diffs between them (tags deltanas.parent, deltanas.root, deltanas.generation).
"""

from __future__ import annotations

import hashlib


def candidate_id(search_id: str, cycle: int, parent: str, mode: str, index: int) -> str:
    """Deterministic id: the same search position always names the same candidate."""
    digest = hashlib.sha1(f"{search_id}|{cycle}|{parent}|{mode}|{index}".encode()).hexdigest()[:10]
    return f"c{cycle}-{mode}-{index}-{digest}"


def repair_id(first: str, attempt: int) -> str:
    """Id of the `attempt`-th repair of the candidate whose first attempt is `first`."""
    return f"{first}-r{attempt}"


def derive_seed(base: int, *parts: object) -> int:
    """A seed in [0, 2^31) for `parts` (cycle, parent, ...), derived from the search's base seed."""
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:8]
    return (base * 1_000_003 + int(digest, 16)) % 2**31
