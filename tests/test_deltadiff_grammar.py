"""The diff grammar (deltadiff.grammar) as xgrammar compiles and matches it: what it lets through and what not."""

from __future__ import annotations

import random
from functools import cache

import pytest
import xgrammar as xgr

from curator_svc.lemur import LemurIndex
from deltadiff import apply_diff, diff_grammar, extract_diff, make_diff
from deltadiff.grammar import FENCE_CLOSE, FENCE_OPEN, MAX_ADDED, MAX_DIGITS, grammar_shape
from deltanas import model_sources
from tests.support import TEST_MODEL
from tests.support.diffs import NET

# The damage tests' model, with a line of quotes, backslashes and a tab, and a tab-indented line, after the ReLU.
BASE = NET.replace("        self.relu = nn.ReLU()\n", "        self.relu = nn.ReLU()\n"
                           "        self.name = \"a \\\"quoted\\\" \\\\ name\\t\"\n\tself.tabbed = 1\n")
HEAD = f"{FENCE_OPEN}--- a/model.py\n+++ b/model.py\n"


@cache
def _compiler() -> xgr.GrammarCompiler:
    tokenizer = model_sources.load_tokenizer(TEST_MODEL)
    return xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer), max_threads=2)


def accepts(baseline: str, answer: str) -> bool:
    """Whether the whole `answer` is a complete sentence of the baseline's grammar."""
    matcher = xgr.GrammarMatcher(_compiler().compile_grammar(diff_grammar(baseline)))
    return matcher.accept_string(answer) and matcher.is_completed()


def fenced(diff: str) -> str:
    return f"{FENCE_OPEN}{diff}{FENCE_CLOSE}"


def test_diffs_made_by_difflib_are_accepted_and_apply() -> None:
    target = (BASE.replace("kernel_size=3)", "kernel_size=5, padding=2)")
              .replace("ReLU()\n", "ReLU()\n        self.drop = nn.Dropout(0.2)\n")
              .replace("return self.fc(x)", "return self.fc(self.drop(x))"))
    diff = make_diff(BASE, target)
    assert diff.count("@@ -") == 2  # two hunks, one with changes 4 lines apart (merged, as diff -U3 does)
    assert accepts(BASE, fenced(diff))
    assert apply_diff(BASE, extract_diff(fenced(diff))) == target


def test_quotes_backslashes_and_tabs_of_the_baseline_are_matched_literally() -> None:
    target = BASE.replace("\tself.tabbed = 1", "\tself.tabbed = 2").replace("name\\t", "name\\n")
    assert accepts(BASE, fenced(make_diff(BASE, target)))


@pytest.mark.parametrize("what, answer", [
    ("a context line that is not in the file",
     "@@ -7,3 +7,3 @@\n         super(Net, self).__init__()\n-        self.conv = nn.Conv2d(3, 32, kernel_size=3)\n"
     "+        self.conv = nn.Conv2d(3, 32, kernel_size=5)\n"),
    ("a misquoted removed line (a space added)",
     "@@ -8,1 +8,1 @@\n-        self.conv = nn.Conv2d( 3, 32, kernel_size=3)\n"
     "+        self.conv = nn.Conv2d(3, 64, 3)\n"),
    ("a skipped baseline line",
     "@@ -7,3 +7,3 @@\n         super().__init__()\n-        self.bn = nn.BatchNorm2d(32)\n+        self.bn = None\n"),
    ("a hunk without a change",
     "@@ -7,2 +7,2 @@\n         super().__init__()\n         self.bn = nn.BatchNorm2d(32)\n"),
    ("a hunk that starts with an added line", "@@ -1,1 +1,2 @@\n+import math\n import torch\n"),
    ("four leading context lines",
     "@@ -5,5 +5,5 @@\n class Net(nn.Module):\n     def __init__(self, in_shape, out_shape, prm, device):\n"
     "         super().__init__()\n         self.conv = nn.Conv2d(3, 32, kernel_size=3)\n"
     "-        self.bn = nn.BatchNorm2d(32)\n+        self.bn = nn.BatchNorm2d(32, momentum=0.2)\n"),
    ("hunks out of order",
     "@@ -16,1 +16,1 @@\n-        x = self.relu(self.bn(self.conv(x)))\n+        x = self.relu(self.conv(x))\n"
     "@@ -8,1 +8,1 @@\n-        self.conv = nn.Conv2d(3, 32, kernel_size=3)\n"
     "+        self.conv = nn.Conv2d(3, 32, 5)\n"),
])
def test_what_does_not_fit_the_baseline_is_refused(what: str, answer: str) -> None:
    assert not accepts(BASE, HEAD + answer + FENCE_CLOSE), what


def test_the_answer_must_be_complete() -> None:
    diff = make_diff(BASE, BASE.replace("kernel_size=3", "kernel_size=5"))
    assert not accepts(BASE, fenced(diff).removesuffix(FENCE_CLOSE))  # no closing fence
    assert not accepts(BASE, HEAD + FENCE_CLOSE)  # no hunk


def test_forced_text_is_found_for_jump_forward() -> None:
    """After the model picks a baseline line by its first characters, the grammar forces the rest of it."""
    matcher = xgr.GrammarMatcher(_compiler().compile_grammar(diff_grammar(BASE)))
    assert matcher.find_jump_forward_string() == HEAD + "@@ -"
    assert matcher.accept_string(HEAD + "@@ -8,3 +8,3 @@\n-        self.co")
    assert matcher.find_jump_forward_string() == "nv = nn.Conv2d(3, 32, kernel_size=3)\n"


def test_random_edits_of_lemur_models_are_accepted_and_apply() -> None:
    """difflib diffs of random line edits (replace, insert, delete) in real LEMUR models all fit their grammar."""
    rng = random.Random(7)
    models = LemurIndex.load(datasets=["mnist"]).baselines("mnist")
    for baseline in rng.sample(models, 4):
        lines = baseline.code.split("\n")
        for _ in range(3):
            edited = list(lines)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(edited) - 1)
                kind = rng.choice(["replace", "insert", "delete"])
                if kind == "replace":
                    edited[at] = edited[at] + "  # tuned"
                elif kind == "insert":
                    edited.insert(at, "        pass")
                else:
                    del edited[at]
            target = "\n".join(edited)
            if target == baseline.code:
                continue
            answer = fenced(make_diff(baseline.code, target))
            assert accepts(baseline.code, answer), f"{baseline.name}: {answer}"
            assert apply_diff(baseline.code, extract_diff(answer)) == target


def test_grammar_size_is_linear_in_the_file() -> None:
    shape = grammar_shape(BASE)
    assert shape.lines == len(BASE.splitlines())
    assert shape.rules <= 15 * shape.lines + 8 + MAX_ADDED
    with pytest.raises(ValueError, match="baseline: is empty"):
        diff_grammar("")
    with pytest.raises(ValueError, match="max_context"):
        diff_grammar(BASE, max_context=0)
    with pytest.raises(ValueError, match="max_added"):
        diff_grammar(BASE, max_added=0)


def test_added_lines_come_in_runs_of_at_most_max_added() -> None:
    """A model cannot loop on added lines: a run longer than MAX_ADDED is refused, and a baseline line (context or
    removed) between two runs lets the next one start."""
    lines = BASE.splitlines(keepends=True)

    def answer(first: int, second: int) -> str:
        added = "".join(f"+x{i} = {i}\n" for i in range(first))
        again = "".join(f"+y{i} = {i}\n" for i in range(second))
        hunk = f"@@ -1,2 +1,{2 + first + second} @@\n {lines[0]}{added} {lines[1]}{again}"
        return fenced(f"--- a/model.py\n+++ b/model.py\n{hunk}")

    assert accepts(BASE, answer(MAX_ADDED, 0)) and accepts(BASE, answer(MAX_ADDED, MAX_ADDED))
    assert not accepts(BASE, answer(MAX_ADDED + 1, 0))


def test_header_numbers_are_free_up_to_max_digits() -> None:
    """The applier recomputes headers, so any number is accepted, but a run of digits cannot eat the token budget
    (an untuned SmolLM2 under vLLM wrote `@@ -123456789012...` until max_tokens)."""
    first = BASE.splitlines(keepends=True)[0]

    def answer(start: str) -> str:
        return fenced(f"--- a/model.py\n+++ b/model.py\n@@ -{start},1 +{start} @@\n-{first}")

    assert accepts(BASE, answer("7")) and accepts(BASE, answer("9" * MAX_DIGITS))
    assert not accepts(BASE, answer("1" * (MAX_DIGITS + 1)))
