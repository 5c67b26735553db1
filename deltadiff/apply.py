"""Apply a diff to base code: tolerant front end (normalize_diff), strict back end (unidiff)."""

import unidiff

from deltadiff.errors import ApplyError
from deltadiff.lines import SourceText
from deltadiff.normalize import normalize_diff


def apply_well_formed(base: str, diff_text: str) -> str:  # noqa: C901 - see the docstring
    """Apply a well-formed one-file unified diff exactly; raises ApplyError on any mismatch. (One loop over the
    hunks' lines, each check next to the line it is about: the strict back end reads top to bottom.)"""
    try:
        patch = unidiff.PatchSet(diff_text)
    except unidiff.UnidiffParseError as exc:
        raise ApplyError(f"malformed diff: {exc}") from exc
    if len(patch) != 1:
        raise ApplyError(f"diff touches {len(patch)} files; expected one")
    source = SourceText.parse(base)
    old, out, cursor, final_eol = source.lines, [], 0, source.final_eol
    for number, hunk in enumerate(patch[0], 1):
        start = hunk.source_start - 1 if hunk.source_length else hunk.source_start
        if start < cursor or start > len(old):
            raise ApplyError(
                f"hunk {number} starts at line {hunk.source_start}, outside the file or "
                "before the previous hunk"
            )
        out += old[cursor:start]
        cursor, new_no_eol, previous = start, False, " "
        for line in hunk:
            text = line.value.rstrip("\n")
            if line.line_type == "\\":
                new_no_eol |= previous in " +"
                continue
            previous = line.line_type
            if line.line_type != "+":
                if cursor >= len(old) or old[cursor] != text:
                    raise ApplyError(f"hunk {number}: line {cursor + 1} of the file does not match the diff")
                cursor += 1
            if line.line_type != "-":
                out.append(text)
        if cursor == len(old):
            final_eol = not new_no_eol
    out += old[cursor:]
    return SourceText(out, final_eol, source.newline).render()


def apply_diff(base: str, diff_text: str, notes: list[str] | None = None) -> str:
    """Apply a possibly damaged diff (see deltadiff.lenient) to base; raises ApplyError(reason). `notes` (if
    given) receives the fuzz used for each hunk that was not found exactly (deltadiff.locate)."""
    return apply_well_formed(base, normalize_diff(base, diff_text, notes))
