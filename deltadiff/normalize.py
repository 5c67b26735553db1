"""Turn a damaged LLM diff into a well-formed unified diff for a given base file.

The lenient hunks are located in the base by content (deltadiff.locate); each is re-emitted with correct
`@@ -a,b +c,d @@` numbers, the base's own text for its context and removed lines, the added lines exactly
as written, and correct "No newline at end of file" markers, under `--- a/PATH` / `+++ b/PATH` headers.
"""

from deltadiff.lenient import parse_lenient
from deltadiff.lines import SourceText
from deltadiff.locate import Placement, place_hunks
from deltadiff.make import NO_EOL_MARKER

Lines = list[tuple[str, str]]  # (tag, text) with tag in ' -+'


def _range(pos: int, length: int) -> str:
    return f"{pos + 1 if length else pos},{length}"


def _emit_hunk(placement: Placement, base: SourceText, shift: int) -> tuple[list[str], int]:
    """The hunk's rows and its line-count change; shift is the change of all hunks before it."""
    pos, actual = placement.pos, iter(base.lines[placement.pos : placement.pos + placement.old_len])
    lines = [(tag, text if tag == "+" else next(actual)) for tag, text in placement.lines]
    reaches_end = pos + placement.old_len == len(base.lines)
    old_eol = new_eol = True
    if reaches_end:
        hunk = placement.hunk
        old_eol = base.final_eol
        new_eol = False if hunk.new_no_eol else hunk.old_no_eol or base.final_eol
        if not old_eol and placement.old_len == 0 and pos:
            pos -= 1
            lines.insert(0, (" ", base.lines[pos]))
        lines = _split_marked_context(lines, old_eol, new_eol)
    old_len = sum(tag != "+" for tag, _ in lines)
    new_len = sum(tag != "-" for tag, _ in lines)
    rows = [f"@@ -{_range(pos, old_len)} +{_range(pos + shift, new_len)} @@"]
    for i, (tag, text) in enumerate(lines):
        rows.append(tag + text)
        if _marked(lines, i, old_eol, new_eol) != (False, False):
            rows.append(NO_EOL_MARKER)
    return rows, new_len - old_len


def _marked(lines: Lines, i: int, old_eol: bool, new_eol: bool) -> tuple[bool, bool]:
    """Whether line i is the old side's / the new side's last line and lacks its newline there."""
    last_old = max((j for j, (tag, _) in enumerate(lines) if tag != "+"), default=-1)
    last_new = max((j for j, (tag, _) in enumerate(lines) if tag != "-"), default=-1)
    return i == last_old and not old_eol, i == last_new and not new_eol


def _split_marked_context(lines: Lines, old_eol: bool, new_eol: bool) -> Lines:
    """A context line's end-of-file marker speaks for both sides: split it into -/+ where they differ."""
    out: Lines = []
    for i, (tag, text) in enumerate(lines):
        old_marked, new_marked = _marked(lines, i, old_eol, new_eol)
        out += [("-", text), ("+", text)] if tag == " " and old_marked != new_marked else [(tag, text)]
    return out


def normalize_diff(base: str, text: str, notes: list[str] | None = None) -> str:
    """A well-formed unified diff equivalent to text for base; raises ApplyError when none is certain.
    `notes` (if given) receives one line per hunk that was not found exactly: the fuzz used to place it."""
    raw = parse_lenient(text)
    source = SourceText.parse(base)
    path = raw.path or "model.py"
    rows = [f"--- a/{path}", f"+++ b/{path}"]
    shift = 0
    for placement in place_hunks(raw.hunks, source.lines):
        if notes is not None and placement.fuzz:
            notes.append(placement.fuzz)
        hunk_rows, change = _emit_hunk(placement, source, shift)
        rows += hunk_rows
        shift += change
    return "\n".join(rows) + "\n"
