"""Locate lenient hunks in the base file, by content, refusing whatever is not certain.

Each hunk's old block (context + removed lines) is searched in the whole file, first exactly, then with
trailing whitespace stripped, then with all whitespace normalized; the first comparison that finds it
decides. One match: it goes there. Several: ambiguous, unless exactly one of them lies between the
neighbouring hunks (the previous placement and the next uniquely found hunk: hunks come in file order),
or the diff's line numbers are trustworthy (stated on every hunk, counts agreeing with the bodies,
old/new starts consistent, every uniquely found hunk sitting exactly at its stated line) and the block
matches exactly at its stated line. A hunk with no old lines (pure addition without context) is placed by
its trusted line number or refused. Hunks must come in file order and must not overlap.

Last comes misquoted context: a hunk found nowhere is placed where its removed lines match but for whitespace
and each context line either matches so or is *similar* to the file's (equal but for whitespace, a
trailing comment added or dropped, or one token changed, added or dropped), if at least as many of its lines
match as are similar, one of the matching lines has content, and that place is the only one. The file's own
context lines are kept. Each placement says which fuzz it used (`Placement.fuzz`).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from deltadiff.errors import ApplyError
from deltadiff.lenient import RawHunk

Key = Callable[[str], str]
LEVELS: tuple[tuple[str, Key], ...] = (
    ("exact", lambda line: line),
    ("trailing whitespace stripped", str.rstrip),
    ("whitespace normalized", lambda line: " ".join(line.split())),
)
MISQUOTED = len(LEVELS)  # the level after LEVELS: misquoted context lines
LEVEL_NAMES = (*(name for name, _ in LEVELS), "context lines misquoted")
_TOKEN = re.compile(r"\w+|\S")


def _squash(line: str) -> str:
    """The line without any whitespace: equal squashed lines differ in whitespace only."""
    return "".join(line.split())


def _tokens(line: str) -> list[str]:
    """Code tokens of a line without its trailing comment (a crude cut: a '#' in a string cuts both sides)."""
    return _TOKEN.findall(line.split("#", 1)[0])


def similar(quoted: str, actual: str) -> bool:
    """A context line quoted slightly wrong: the same tokens but for a trailing comment, or one token changed,
    added or dropped."""
    a, b = _tokens(quoted), _tokens(actual)
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    if abs(len(a) - len(b)) != 1:
        return False
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


@dataclass(frozen=True)
class Placement:
    """Where a hunk goes: 0-based index of its first old line, and the (tag, text) lines used there."""

    hunk: RawHunk
    pos: int
    lines: list[tuple[str, str]]
    fuzz: str = ""  # how it was found when not exactly: a comparison level, or the misquoted context lines

    @property
    def old_len(self) -> int:
        return sum(tag != "+" for tag, _ in self.lines)


@dataclass
class _Search:
    hunk: RawHunk
    lines: list[tuple[str, str]]
    matches: list[int]
    level: int


class _Index:
    """The base file keyed under each comparison level, with first-line lookup tables."""

    def __init__(self, base: list[str]) -> None:
        self.size = len(base)
        self.keyed = [[key(line) for line in base] for _, key in LEVELS]
        self.first: list[dict[str, list[int]]] = []
        for keyed in self.keyed:
            table: dict[str, list[int]] = {}
            for pos, line in enumerate(keyed):
                table.setdefault(line, []).append(pos)
            self.first.append(table)

    def matches(self, block: list[str], level: int) -> list[int]:
        key = LEVELS[level][1]
        wanted = [key(line) for line in block]
        keyed = self.keyed[level]
        return [
            pos for pos in self.first[level].get(wanted[0], []) if keyed[pos : pos + len(wanted)] == wanted
        ]

    def matches_at(self, block: list[str], pos: int) -> bool:
        return self.keyed[0][pos : pos + len(block)] == block

    def misquoted(self, old: list[tuple[str, str]]) -> list[int]:
        """Places where `old` (tag, text) fits with misquoted context lines (see the module doc)."""
        base, squashed = self.keyed[0], [_squash(line) for line in self.keyed[0]]
        found = []
        for pos in range(self.size - len(old) + 1):
            matching, fuzzy, content = 0, 0, False
            for i, (tag, text) in enumerate(old):
                if _squash(text) == squashed[pos + i]:
                    matching, content = matching + 1, content or bool(squashed[pos + i])
                elif tag == " " and similar(text, base[pos + i]):
                    fuzzy += 1
                else:
                    break
            else:
                if content and matching >= fuzzy:
                    found.append(pos)
        return found


def _stated_pos(start: int | None, count: int | None) -> int | None:
    """0-based index a stated range begins at (an empty range names the line before it)."""
    if start is None:
        return None
    return start if count == 0 else start - 1


def _search(hunk: RawHunk, index: _Index) -> _Search | None:
    variants = [hunk.lines]
    if hunk.soft_tail:
        variants.append(hunk.lines[: len(hunk.lines) - hunk.soft_tail])
    for lines in variants:
        block = hunk.old_lines(lines)
        if not block:
            return _Search(hunk, lines, [], 0)
        for level in range(len(LEVELS)):
            found = index.matches(block, level)
            if found:
                return _Search(hunk, lines, found, level)
    for lines in variants:
        found = index.misquoted([(tag, text) for tag, text in lines if tag != "+"])
        if found:
            return _Search(hunk, lines, found, MISQUOTED)
    return None


def _fuzz(search: _Search, pos: int, base: list[str]) -> str:
    if search.level == 0:
        return ""
    if search.level < MISQUOTED:
        return f"hunk {search.hunk.number}: {LEVEL_NAMES[search.level]}"
    old = [(tag, text) for tag, text in search.lines if tag != "+"]
    lines = [f"line {pos + i + 1} quoted {_excerpt(text)}, the file has {_excerpt(base[pos + i])}"
             for i, (_, text) in enumerate(old) if text != base[pos + i]]
    return f"hunk {search.hunk.number}: {LEVEL_NAMES[search.level]}: " + "; ".join(lines)


def _counts_agree(hunk: RawHunk, lines: list[tuple[str, str]]) -> bool:
    old = sum(tag != "+" for tag, _ in lines)
    new = sum(tag != "-" for tag, _ in lines)
    return hunk.old_count == old and hunk.new_count == new


def _numbers_trusted(searches: list[_Search]) -> bool:
    delta = 0
    for search in searches:
        hunk = search.hunk
        old_pos = _stated_pos(hunk.old_start, hunk.old_count)
        new_pos = _stated_pos(hunk.new_start, hunk.new_count)
        if old_pos is None or new_pos is None or not _counts_agree(hunk, search.lines):
            return False
        if new_pos - old_pos != delta or (len(search.matches) == 1 and search.matches[0] != old_pos):
            return False
        delta += sum((tag == "+") - (tag == "-") for tag, _ in search.lines)
    return True


def _excerpt(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _nowhere(hunk: RawHunk, base: list[str]) -> ApplyError:
    block = hunk.old_lines()
    reason = f"hunk {hunk.number} ({hunk.header}): its {len(block)} context/removed lines match nowhere"
    pos = _stated_pos(hunk.old_start, hunk.old_count)
    if pos is not None and 0 <= pos < len(base):
        for offset, line in enumerate(block):
            found = base[pos + offset] if pos + offset < len(base) else "<end of file>"
            if found.strip() != line.strip():
                return ApplyError(
                    f"{reason}; at line {pos + offset + 1} the diff has {_excerpt(line)}, "
                    f"the file has {_excerpt(found)}"
                )
    return ApplyError(reason + " in the file")


def place_hunks(hunks: list[RawHunk], base: list[str]) -> list[Placement]:
    """Placements for all hunks, in order; raises ApplyError naming the first hunk that cannot be placed."""
    index = _Index(base)
    searches: list[_Search] = []
    for hunk in hunks:
        search = _search(hunk, index)
        if search is None:
            raise _nowhere(hunk, base)
        searches.append(search)
    trusted = _numbers_trusted(searches)
    next_unique, bound = [], index.size  # start of the next uniquely found hunk, for each hunk
    for search in reversed(searches):
        next_unique.append(bound)
        bound = search.matches[0] if len(search.matches) == 1 else bound
    placements: list[Placement] = []
    for search, high in zip(searches, reversed(next_unique), strict=True):
        hunk = search.hunk
        low = placements[-1].pos + placements[-1].old_len if placements else 0
        pos = _choose(search, index, trusted, (low, high))
        placement = Placement(hunk, pos, search.lines, _fuzz(search, pos, base))
        if placements:
            before = placements[-1]
            if placement.pos < before.pos + before.old_len:
                raise ApplyError(
                    f"hunk {hunk.number} ({hunk.header}) at line {placement.pos + 1} overlaps "
                    f"or precedes hunk {before.hunk.number} (lines {before.pos + 1}-"
                    f"{before.pos + before.old_len})"
                )
        placements.append(placement)
    return placements


def _choose(search: _Search, index: _Index, trusted: bool, window: tuple[int, int]) -> int:
    hunk = search.hunk
    block = hunk.old_lines(search.lines)
    between = [pos for pos in search.matches if window[0] <= pos and pos + len(block) <= window[1]]
    if len(search.matches) == 1 or (len(between) == 1 and search.level != MISQUOTED):
        return (between or search.matches)[0]
    stated = _stated_pos(hunk.old_start, hunk.old_count)
    if trusted and stated is not None and 0 <= stated <= index.size and index.matches_at(block, stated):
        return stated
    where = f"{hunk.number} ({hunk.header})"
    if not search.matches:
        raise ApplyError(f"hunk {where} adds lines without context and its line numbers cannot be trusted")
    lines = ", ".join(str(pos + 1) for pos in search.matches[:5])
    raise ApplyError(
        f"hunk {where} is ambiguous: its old lines match at lines {lines} ({LEVEL_NAMES[search.level]})"
    )
