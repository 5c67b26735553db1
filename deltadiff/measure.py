"""Size statistics of a diff."""

from dataclasses import dataclass

import unidiff

from deltadiff.errors import ApplyError
from deltadiff.lenient import parse_lenient
from deltadiff.lines import split_keepends, to_lf


@dataclass(frozen=True)
class DiffStats:
    """Hunks, added and removed lines, and total lines of the diff text."""

    hunks: int
    added: int
    removed: int
    lines: int


def measure(diff_text: str) -> DiffStats:
    """Stats of diff_text: parsed by unidiff when well-formed, leniently otherwise (all zero when empty)."""
    total = len(split_keepends(to_lf(diff_text)))
    try:
        patch = unidiff.PatchSet(diff_text)
        if patch:
            return DiffStats(sum(len(f) for f in patch), patch.added, patch.removed, total)
    except unidiff.UnidiffParseError:
        pass
    try:
        hunks = parse_lenient(diff_text).hunks
    except ApplyError:
        return DiffStats(0, 0, 0, total)
    tags = [tag for hunk in hunks for tag, _ in hunk.lines]
    return DiffStats(len(hunks), tags.count("+"), tags.count("-"), total)
