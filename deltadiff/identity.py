"""What makes two changes the same, and how to name one in a line.

    code_fingerprint(code)            # equal for programs that differ only in comments and layout
    same_code(a, b)                   # fingerprints equal
    change_summary(diff_text)         # "-loss.backward() | +loss.backward(retain_graph=True)"
    answer_program(answer, baseline, delta=True)   # the program an LLM answer makes (ExtractError, ApplyError)

The evaluator refuses a change whose program equals its baseline's, and a search evaluates one program per parent
only once; both compare fingerprints.
"""

from __future__ import annotations

import ast
import hashlib

from deltadiff.apply import apply_diff
from deltadiff.extract import extract_code, extract_diff
from deltadiff.lines import to_lf


def code_fingerprint(code: str) -> str:
    """sha256 of the program's AST (comments and layout ignored); text that does not parse is fingerprinted without
    trailing whitespace and blank lines (the evaluator's syntax stage says why it does not parse)."""
    try:
        text = ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        text = "\n".join(x.rstrip() for x in to_lf(code).splitlines() if x.strip())
    return hashlib.sha256(text.encode()).hexdigest()


def same_code(a: str, b: str) -> bool:
    """The same program but for comments and layout."""
    return code_fingerprint(a) == code_fingerprint(b)


def change_summary(diff_text: str, limit: int = 240) -> str:
    """The removed and added lines of a unified diff, stripped, on one line (`-old | +new`), at most `limit`
    characters: how a prompt or a table names a change."""
    rows = []
    for line in to_lf(diff_text).splitlines():
        if line.startswith(("---", "+++")) or not line.startswith(("-", "+")):
            continue
        body = " ".join(line[1:].split())
        if body:
            rows.append(line[0] + body)
    text = " | ".join(rows) or "(no line changed)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def complete_lines(answer: str) -> str:
    """An answer cut at the token limit, without its unfinished last line (under constrained decoding every line
    boundary ends a diff that fits, so the complete lines still apply)."""
    return answer[: answer.rindex("\n") + 1] if "\n" in answer and not answer.endswith("\n") else answer


def answer_program(answer: str, baseline: str, *, delta: bool, cut: bool = False) -> str:
    """The program an LLM answer makes: its diff applied to `baseline` (delta) or the model it holds (full); `cut`:
    the answer stopped at the token limit. Raises ExtractError or ApplyError."""
    if cut and delta:
        answer = complete_lines(answer)
    return apply_diff(baseline, extract_diff(answer)) if delta else extract_code(answer)
