"""A grammar of the unified diffs that fit one baseline file: what constrained decoding lets an LLM write.

    >>> ebnf = diff_grammar(baseline_code)            # GBNF/EBNF text for xgrammar (local backend, vLLM)

The answer is a ```diff block with `--- a/model.py` / `+++ b/model.py` headers and one or more hunks. In every
hunk the context (` `) and removed (`-`) lines are consecutive lines of the baseline, the hunk has at least one
change, it starts with a baseline line (so the applier can always place it), at most `max_context` context lines
lead or trail it and at most twice that stand between two changes (as `diff -U3` merges hunks). Hunks go down
the file in order. Added (`+`) lines are free text, at most `max_added` of them in a row (a baseline line or the end
of the hunk comes between two runs), so a model cannot loop on added lines until the token limit; the numbers of
`@@` headers are free (the applier recomputes headers) up to `MAX_DIGITS` digits each.
A grammar that only asked for *some* baseline line per row lets a model loop on one line; this one tracks the
position: a state is (next baseline line, context lines since the last change, whether the hunk has a change).
Every line boundary after a change ends a prefix that applies, so an answer cut at the token limit still
applies once its unfinished last line is dropped (evaluator_svc.patching).
"""

from __future__ import annotations

from dataclasses import dataclass

from deltadiff.lines import to_lf

FENCE_OPEN = "```diff\n"
FENCE_CLOSE = "```"
MAX_ADDED = 16  # added lines in a row
MAX_DIGITS = 6  # digits of a number in a hunk header (files of up to 999,999 lines)


@dataclass(frozen=True)
class GrammarShape:
    """What the grammar allows, so callers can report it."""

    lines: int
    rules: int


def _literal(text: str) -> str:
    """An EBNF string literal: backslash, quote and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def diff_grammar(baseline: str, path: str = "model.py", max_context: int = 3, max_added: int = MAX_ADDED) -> str:
    """EBNF (xgrammar/GBNF dialect) of the fenced unified diffs against `baseline` described in the module doc."""
    return _build(baseline, path, max_context, max_added)[0]


def grammar_shape(baseline: str, path: str = "model.py", max_context: int = 3,
                  max_added: int = MAX_ADDED) -> GrammarShape:
    ebnf, lines = _build(baseline, path, max_context, max_added)
    return GrammarShape(lines=lines, rules=sum(1 for row in ebnf.splitlines() if "::=" in row))


def _build(baseline: str, path: str, max_context: int, max_added: int) -> tuple[str, int]:  # noqa: C901 - see the docstring
    """The grammar's EBNF and the baseline's line count. Its complexity is the state table (next line, context run,
    changed), written out in one place so that the states read side by side."""
    if max_context < 1:
        raise ValueError(f"max_context: must be at least 1, got {max_context}")
    if max_added < 1:
        raise ValueError(f"max_added: must be at least 1, got {max_added}")
    lines = to_lf(baseline).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    if not lines:
        raise ValueError("baseline: is empty, no diff can fit it")
    n = len(lines)
    rules = [
        f"root ::= {_literal(FENCE_OPEN + f'--- a/{path}' + chr(10) + f'+++ b/{path}' + chr(10))} hunk0 "
        f"{_literal(FENCE_CLOSE)}",
        'header ::= "@@ -" num ("," num)? " +" num ("," num)? " @@" text',
        # 1..MAX_DIGITS digits: an untuned model that loops on digits ends the number instead of the token budget.
        "num ::= [0-9]" + " ([0-9]" * (MAX_DIGITS - 1) + ")?" * (MAX_DIGITS - 1),
        'added ::= "+" text',
        # adds<k>: a run of 1..k added lines (a chain: no repetition for xgrammar to inline).
        "adds1 ::= added",
        *(f"adds{k} ::= added | added adds{k - 1}" for k in range(2, max_added + 1)),
        # The rest of a line, recursive rather than [^\\n]*: xgrammar inlines a plain repetition into every rule
        # that refers to it and precomputes token masks for each copy (15 s to compile instead of 0.1 s).
        'text ::= [^\\n] text | "\\n"',
    ]
    # hunk<i>: a hunk whose first line is baseline line j >= i (a chain, so the grammar stays linear in n).
    for i in range(n):
        rest = f" | hunk{i + 1}" if i + 1 < n else ""
        rules.append(f"hunk{i} ::= header s{i}_0_0{rest}")
    for i, line in enumerate(lines):
        rules.append(f"l{i} ::= {_literal(line + chr(10))}")

    def state(i: int, c: int, changed: bool, adding: bool = True) -> list[str]:
        """Alternatives of state (next line i, c context lines since the last change, changed); `adding`: an added
        run may start here (False right after one: a<i> states)."""
        alts = []
        if i < n and c < (2 * max_context if changed else max_context):
            alts.append(f'" " l{i} s{i + 1}_{c + 1}_{int(changed)}')
        if i < n:
            alts.append(f'"-" l{i} s{i + 1}_0_1')
        if adding and (changed or c > 0):
            alts.append(f"adds{max_added} a{i}")
        if changed and c <= max_context:
            if i < n:
                alts.append(f"hunk{i}")
            alts.append('""')
        return alts

    for i in range(n + 1):  # a<i>: right after an added run before line i (changed, no context since)
        rules.append(f"a{i} ::= " + " | ".join(state(i, 0, True, adding=False)))
    for i in range(n + 1):
        for changed in (False, True):
            for c in range(2 * max_context + 1 if changed else max_context + 1):
                alts = state(i, c, changed)
                if alts:
                    rules.append(f"s{i}_{c}_{int(changed)} ::= " + " | ".join(alts))
    return "\n".join(rules) + "\n", n
