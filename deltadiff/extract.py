"""Pull a diff (delta mode) or Python code (full-generation mode) out of raw LLM text.

Diffs are looked for, in order: inside <diff>...</diff> tags, in ```diff / ```patch fences (whose body may
lack any header), in any fence whose body looks like a diff, then bare in the text from its first header to
its last diff-looking line.
"""

import ast
import re

from deltadiff.errors import ExtractError
from deltadiff.lines import to_lf

_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n"
    r"(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.M | re.S,
)
_TAG = re.compile(r"<(diff|patch)>\n?(?P<body>.*?)(?:</\1>|\Z)", re.S | re.I)
_DIFF_LANGS = {"diff", "patch", "udiff"}
_PY_LANGS = {"python", "py", "python3"}
_DIFF_LINE = ("+", "-", " ", "@@", "\\")


def _fences(text: str) -> list[tuple[str, str]]:
    return [(m["lang"].lower(), m["body"]) for m in _FENCE.finditer(text)]


def _is_file_header(rows: list[str], index: int) -> bool:
    return rows[index].startswith("--- ") and index + 1 < len(rows) and rows[index + 1].startswith("+++ ")


def _bare_diff(text: str) -> str | None:
    """The span from the first @@ or ---/+++ header to the last line that looks like a diff line."""
    rows = text.split("\n")
    start = next(
        (
            i
            for i, row in enumerate(rows)
            if row.startswith(("@@", "diff --git ")) or _is_file_header(rows, i)
        ),
        None,
    )
    if start is None:
        return None
    end = max(i for i in range(start, len(rows)) if rows[i].startswith(_DIFF_LINE) or i == start)
    return "\n".join(rows[start : end + 1]) + "\n"


def _has_changes(diff: str) -> bool:
    rows = diff.split("\n")
    header_rows = {i + k for i in range(len(rows)) if _is_file_header(rows, i) for k in (0, 1)}
    return any(row.startswith(("+", "-")) for i, row in enumerate(rows) if i not in header_rows)


def extract_diff(text: str) -> str:
    """The diff in text, with LF line endings; raises ExtractError when there is none."""
    text = to_lf(text)
    tagged = [m["body"] for m in _TAG.finditer(text)]
    if tagged:
        text = "\n".join(tagged)
    fences = _fences(text)
    # a block labelled diff may be a bare hunk body: "@@" makes it a hunk located by its content
    labelled = [_bare_diff(body) or _bare_diff("@@\n" + body) for lang, body in fences if lang in _DIFF_LANGS]
    fenced = [part for part in (_bare_diff(body) for _, body in fences) if part]
    parts = [part for part in labelled or fenced or [_bare_diff(text)] if part]
    if not parts:
        raise ExtractError("no diff found: no @@ hunk header or ---/+++ file header in the text")
    diff = "".join(parts)
    if not _has_changes(diff):
        raise ExtractError("the diff has no added or removed lines")
    return diff


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_code(text: str) -> str:
    """The largest ```python block of text, else the largest fenced block that parses, else the whole text
    if it parses as Python; raises ExtractError otherwise."""
    text = to_lf(text)
    fences = _fences(text)
    python = [body for lang, body in fences if lang in _PY_LANGS]
    blocks = python or [body for _, body in fences if _parses(body)]
    if blocks:
        return max(blocks, key=len)
    if text.strip() and _parses(text):
        return text
    raise ExtractError("no python code block found and the text is not valid python")
