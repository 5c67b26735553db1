"""Deterministic corpus of damaged LLM-style diffs over real LEMUR model pairs (bench_apply and the deltadiff
tests), and GNU patch as the reference applier.

A pair is two LEMUR model files of the same family (AirNet.py, AirNet-626c....py); its true diff is
make_diff(old, new). Each damage kind rewrites the true diff the way LLMs do; controls are diffs that must be
refused (their `target` is None).
"""

import itertools
import random
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deltadiff import make_diff
from deltadiff.lines import split_keepends
from deltanas.lemur import lemur_root

_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
MAX_HUNKS = 12


@dataclass(frozen=True)
class Pair:
    """Two versions of a LEMUR model."""

    name: str
    old: str
    new: str


@dataclass(frozen=True)
class Variant:
    """A diff text to apply to base; target is the correct result, None when it must be refused."""

    kind: str
    pair: str
    base: str
    text: str
    target: str | None


def _read(path: Path) -> str:
    return path.read_bytes().decode()


def lemur_pairs(limit: int) -> list[Pair]:
    """Up to limit pairs of consecutive same-family files (sorted names), round-robin over families,
    skipping identical pairs and diffs of more than MAX_HUNKS hunks."""
    families: dict[str, list[Path]] = {}
    for path in sorted((lemur_root() / "nn").glob("*.py")):
        families.setdefault(path.stem.split("-")[0], []).append(path)
    queues = [itertools.pairwise(files) for files in families.values() if len(files) > 1]
    pairs: list[Pair] = []
    while queues and len(pairs) < limit:
        for queue in list(queues):
            step = next(queue, None)
            if step is None:
                queues.remove(queue)
                continue
            old, new = _read(step[0]), _read(step[1])
            if old != new and make_diff(old, new).count("\n@@") <= MAX_HUNKS:
                pairs.append(Pair(f"{step[0].stem}->{step[1].stem}", old, new))
            if len(pairs) == limit:
                break
    return pairs


def _map_headers(diff: str, edit: Callable[[list[int]], str]) -> str:
    """Rewrite every @@ header; edit gets [old_start, old_count, new_start, new_count]."""

    def one(match: re.Match[str]) -> str:
        a, b, c, d = match.groups()
        return edit([int(a), int(b or 1), int(c), int(d or 1)])

    return "\n".join(_HEADER.sub(one, row) for row in diff.split("\n"))


def _map_rows(diff: str, edit: Callable[[str], str | None]) -> str:
    """Rewrite every hunk body row (None drops it); header rows are kept."""
    rows = []
    for row in diff.split("\n"):
        keep = row if row.startswith(("@@", "--- a/", "+++ b/")) or not row else edit(row)
        if keep is not None:
            rows.append(keep)
    return "\n".join(rows)


def _nonzero(rng: random.Random, bound: int) -> int:
    return rng.choice([n for n in range(-bound, bound + 1) if n])


def shifted(diff: str, rng: random.Random) -> str:
    def edit(n: list[int]) -> str:
        shift = _nonzero(rng, 12)
        return f"@@ -{max(1, n[0] + shift)},{n[1]} +{max(1, n[2] + shift)},{n[3]} @@"

    return _map_headers(diff, edit)


def wrong_counts(diff: str, rng: random.Random) -> str:
    def edit(n: list[int]) -> str:
        return f"@@ -{n[0]},{max(1, n[1] + _nonzero(rng, 3))} +{n[2]},{max(1, n[3] + _nonzero(rng, 3))} @@"

    return _map_headers(diff, edit)


def numberless(diff: str, rng: random.Random) -> str:
    return _map_headers(diff, lambda n: rng.choice(["@@ ... @@", "@@"]))


def _split_cr(row: str) -> tuple[str, str]:
    """A diff row of a CRLF file ends with its line's CR: (row without it, the CR or "")."""
    return (row[:-1], "\r") if row.endswith("\r") else (row, "")


def bare_blank_context(diff: str, rng: random.Random) -> str:
    return _map_rows(diff, lambda row: _split_cr(row)[1] if _split_cr(row)[0] == " " else row)


def unprefixed_context(diff: str, rng: random.Random) -> str:
    return _map_rows(diff, lambda row: row[1:] if row.startswith(" ") else row)


def whitespace_drift(diff: str, rng: random.Random) -> str:
    def edit(row: str) -> str:
        body, cr = _split_cr(row)
        if body[:1] not in (" ", "-") or not body[1:].strip() or rng.random() < 0.5:
            return row
        drifted = rng.choice(["", " ", "\t"]) + body[1:].replace("  ", " ", 1) + rng.choice([" ", "\t"])
        return body[0] + drifted + cr

    return _map_rows(diff, edit)


def _misquote(line: str, rng: random.Random) -> str:
    """One slight misquote of a code line, as LLMs write them."""
    kinds = ["comment"] + (["space after ("] if "(" in line else []) + (["token"] if re.search(r"\d", line) else [])
    kind = rng.choice(kinds)
    if kind == "space after (":
        return line.replace("(", "( ", 1)
    if kind == "token":
        return re.sub(r"\d+", lambda m: str(int(m[0]) + 1), line, count=1)
    return line + "  # unchanged"


def misquoted_context(diff: str, rng: random.Random) -> str:
    """One context line per hunk (one with content) misquoted slightly: a space after "(", a trailing comment,
    one number changed."""
    out, hunk = [], []
    for row in [*diff.split("\n"), "@@"]:
        if row.startswith("@@"):
            context = [i for i, r in enumerate(hunk) if r[:1] == " " and r[1:].strip()]
            if context:
                i = rng.choice(context)
                body, cr = _split_cr(hunk[i])
                hunk[i] = " " + _misquote(body[1:], rng) + cr
            out += hunk
            hunk = []
        hunk.append(row)
    return "\n".join(out[:-1] if out and out[-1] == "" and not diff.endswith("\n") else out)


def crlf(diff: str, rng: random.Random) -> str:
    return diff.replace("\r\n", "\n").replace("\n", "\r\n")


def no_headers(diff: str, rng: random.Random) -> str:
    return diff.split("\n", 2)[2]


def fenced_prose(diff: str, rng: random.Random) -> str:
    return f"Here is the improved model as a diff:\n\n```diff\n{diff}```\n\nThis should raise accuracy.\n"


def _drop_eol_markers(diff: str) -> str:
    """Drop the "No newline at end of file" markers unless they say the final newline changes."""
    rows = diff.split("\n")
    marked = {rows[i - 1][:1] for i, row in enumerate(rows) if row.startswith("\\")}
    if marked and " " not in marked and marked != {"-", "+"}:
        return diff
    return _map_rows(diff, lambda row: None if row.startswith("\\") else row)


def llm_mix(diff: str, rng: random.Random) -> str:
    """What a small LLM typically writes: several kinds of damage at once, no end-of-file markers."""
    diff = _drop_eol_markers(diff)
    for damage in (shifted, wrong_counts, bare_blank_context, no_headers, fenced_prose):
        diff = damage(diff, rng)
    return diff


DAMAGES: dict[str, Callable[[str, random.Random], str]] = {
    "shifted numbers": shifted,
    "wrong counts": wrong_counts,
    "numberless @@": numberless,
    "blank context unprefixed": bare_blank_context,
    "all context unprefixed": unprefixed_context,
    "whitespace drift": whitespace_drift,
    "misquoted context": misquoted_context,
    "CRLF": crlf,
    "missing ---/+++": no_headers,
    "fenced + prose": fenced_prose,
    "LLM mix": llm_mix,
}


def _nowhere(diff: str) -> str:
    """Edit the middle old line of every hunk beyond any misquote (a call appended) so that no hunk fits."""
    out, hunk = [], []
    for row in [*diff.split("\n"), "@@"]:
        if row.startswith("@@"):
            olds = [i for i, r in enumerate(hunk) if r[:1] in (" ", "-") and r[1:].strip()]
            if olds:
                body, cr = _split_cr(hunk[olds[len(olds) // 2]])
                hunk[olds[len(olds) // 2]] = body + " + edited_elsewhere(1, 2)" + cr
            out += hunk
            hunk = []
        hunk.append(row)
    return "\n".join(out)


def variants(pair: Pair, foreign: Pair, seed: int) -> Iterator[Variant]:
    """The clean diff, each damage kind, and the controls for one pair."""
    diff = make_diff(pair.old, pair.new)
    yield Variant("clean", pair.name, pair.old, diff, pair.new)
    yield Variant("zero context", pair.name, pair.old, make_diff(pair.old, pair.new, context=0), pair.new)
    for kind, damage in DAMAGES.items():
        yield Variant(kind, pair.name, pair.old, damage(diff, random.Random(f"{seed}:{kind}")), pair.new)
    yield Variant("control: fits nowhere", pair.name, pair.old, _nowhere(diff), None)
    yield Variant("control: other file", pair.name, pair.old, make_diff(foreign.old, foreign.new), None)
    doubled = _duplicate_first_block(pair.old, diff)
    yield Variant("control: ambiguous", pair.name, doubled, numberless(diff, random.Random(seed)), None)


def _duplicate_first_block(old: str, diff: str) -> str:
    """old with the lines of the diff's first hunk doubled in place: nothing can tell the copies apart."""
    match = _HEADER.match(next(row for row in diff.split("\n") if row.startswith("@@")))
    assert match, "make_diff writes numbered headers"
    first, count = int(match[1]), int(match[2] or 1)
    lines = split_keepends(old)
    newline = "\r\n" if "\r\n" in old else "\n"
    block = [line if line.endswith("\n") else line + newline for line in lines[first - 1 : first - 1 + count]]
    return "".join(lines[: first - 1] + block + lines[first - 1 :])


def corpus(limit: int) -> list[Variant]:
    """All variants over the first limit LEMUR pairs; each pair's foreign diff comes from another family."""
    pairs = lemur_pairs(limit)
    return [
        variant for i, pair in enumerate(pairs) for variant in variants(pair, _other_family(pairs, i), seed=i)
    ]


def _other_family(pairs: list[Pair], i: int) -> Pair:
    family = pairs[i].name.split("-")[0]
    return next((p for p in pairs[i + 1 :] + pairs[:i] if p.name.split("-")[0] != family), pairs[i])


def gnu_patch(base: str, text: str) -> str | None:
    """`base` patched by GNU patch (fuzz 2, forced) with `text`; None when patch refuses it."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.py"
        target.write_bytes(base.encode())
        (Path(tmp) / "change.diff").write_bytes(text.encode())
        command = ["patch", "--fuzz=2", "--force", "--silent", "--no-backup-if-mismatch", "--reject-file=-",
                   "model.py", "-i", "change.diff"]
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return target.read_bytes().decode(errors="replace") if done.returncode == 0 else None
