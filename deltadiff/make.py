"""Make a well-formed unified diff between two versions of a file."""

import difflib

from deltadiff.lines import split_keepends

NO_EOL_MARKER = "\\ No newline at end of file"


def make_diff(old: str, new: str, path: str = "model.py", context: int = 3) -> str:
    """Unified diff from old to new with a/ b/ headers; "" when the texts are identical."""
    if old == new:
        return ""
    out = []
    for line in difflib.unified_diff(
        split_keepends(old), split_keepends(new), f"a/{path}", f"b/{path}", n=context
    ):
        out.append(line if line.endswith("\n") else f"{line}\n{NO_EOL_MARKER}\n")
    return "".join(out)
