"""Lenient parser for damaged unified diffs, as LLMs write them.

Tolerates: prose around the diff, missing or repeated ---/+++ headers, `@@` headers with wrong, partial or
no numbers, context lines that lost their leading space, CRLF. It trusts nothing it reads: the hunks it
returns still have to be located in the base file (see deltadiff.locate).
"""

import re
from dataclasses import dataclass, field

from deltadiff.errors import ApplyError
from deltadiff.lines import to_lf

_RANGES = re.compile(r"-(\d+)(?:,(\d+))?(?:\s+\+(\d+)(?:,(\d+))?)?")
_META_PREFIXES = ("diff --git ", "index ", "new file mode", "deleted file mode", "similarity index")


@dataclass
class RawHunk:
    """One hunk as written: stated ranges (None when absent) and (tag, text) lines with tag in ' -+'."""

    number: int
    header: str
    old_start: int | None = None
    old_count: int | None = None
    new_start: int | None = None
    new_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)
    soft_tail: int = 0  # trailing context lines written without a prefix: maybe prose, droppable
    old_no_eol: bool = False
    new_no_eol: bool = False

    def old_lines(self, lines: list[tuple[str, str]] | None = None) -> list[str]:
        return [text for tag, text in (self.lines if lines is None else lines) if tag != "+"]

    def has_changes(self) -> bool:
        return any(tag != " " for tag, _ in self.lines)


@dataclass
class RawDiff:
    """The hunks of a one-file diff and the path named by its headers ("" when there were none)."""

    path: str
    hunks: list[RawHunk]


def _header_path(line: str) -> str:
    name = line[4:].split("\t")[0].strip()
    return name[2:] if name[:2] in ("a/", "b/") else name


def _parse_header(number: int, line: str) -> RawHunk:
    hunk = RawHunk(number, line.strip())
    match = _RANGES.search(line)
    if match:
        old_start, old_count, new_start, new_count = (None if g is None else int(g) for g in match.groups())
        hunk.old_start, hunk.new_start = old_start, new_start
        hunk.old_count = 1 if old_count is None else old_count
        hunk.new_count = None if new_start is None else (1 if new_count is None else new_count)
    return hunk


def _add_body_line(hunk: RawHunk, line: str) -> None:
    tag = line[:1]
    if tag == "\\":
        last = hunk.lines[-1][0] if hunk.lines else " "
        hunk.old_no_eol |= last in " -"
        hunk.new_no_eol |= last in " +"
        return
    if tag in ("+", "-", " "):
        hunk.lines.append((tag, line[1:]))
        hunk.soft_tail = 0
    else:
        hunk.lines.append((" ", line))
        hunk.soft_tail += 1


def parse_lenient(text: str) -> RawDiff:
    """Parse a one-file diff as leniently as possible; raises ApplyError when there is no hunk."""
    rows = to_lf(text).split("\n")
    while rows and not rows[-1]:
        rows.pop()
    has_at = any(row.startswith("@@") for row in rows)
    paths: list[str] = []
    hunks: list[RawHunk] = []
    current: RawHunk | None = None
    index = 0
    while index < len(rows):
        row = rows[index]
        if row.startswith("--- ") and index + 1 < len(rows) and rows[index + 1].startswith("+++ "):
            paths.append(_header_path(rows[index + 1]))
            current = None if has_at else _parse_header(len(hunks) + 1, "@@")
            if current:
                hunks.append(current)
            index += 2
            continue
        if row.startswith("@@"):
            current = _parse_header(len(hunks) + 1, row)
            hunks.append(current)
        elif row.startswith(_META_PREFIXES) and (current is None or row.startswith("diff --git ")):
            current = None
        elif current is not None:
            _add_body_line(current, row)
        index += 1
    hunks = [hunk for hunk in hunks if hunk.has_changes()]
    named = sorted({path for path in paths if path != "/dev/null"})
    if len(named) > 1:
        raise ApplyError(f"diff touches {len(named)} files ({', '.join(named)}); expected one")
    if not hunks:
        raise ApplyError("diff has no hunk with added or removed lines")
    return RawDiff(named[0] if named else "", hunks)
