"""`deltanas apply BASE DIFF -o OUT`: apply a (possibly raw LLM) diff file to a base file."""

import sys
from pathlib import Path

from deltadiff.apply import apply_diff
from deltadiff.errors import DiffError
from deltadiff.extract import extract_diff


def apply_command(base: Path, diff: Path, out: Path) -> int:
    """Write the patched base to out and return 0, or print one refusal line to stderr and return 1."""
    try:
        code = apply_diff(base.read_bytes().decode(), extract_diff(diff.read_bytes().decode()))
        out.write_bytes(code.encode())
    except (DiffError, OSError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"deltanas apply: refused: {reason}", file=sys.stderr)
        return 1
    return 0
