"""Tolerant application of damaged diffs: one test per kind of damage LLMs produce."""

import random

import pytest

from deltadiff import ApplyError, apply_diff, extract_diff, make_diff, normalize_diff
from deltanas.testing.damage import DAMAGES
from tests.support.diffs import NET

BASE = NET
TARGET = (
    BASE.replace("kernel_size=3)", "kernel_size=5, padding=2)")
    .replace("ReLU()\n", "ReLU()\n        self.drop = nn.Dropout(0.2)\n")
    .replace("return self.fc(x)", "return self.fc(self.drop(x))")
)
DIFF = make_diff(BASE, TARGET)

CHANGE_KERNEL = """@@ -7,3 +7,3 @@
         super().__init__()
-        self.conv = nn.Conv2d(3, 32, kernel_size=3)
+        self.conv = nn.Conv2d(3, 32, kernel_size=5, padding=2)
         self.bn = nn.BatchNorm2d(32)
"""
KERNEL_TARGET = BASE.replace("kernel_size=3)", "kernel_size=5, padding=2)")


@pytest.mark.parametrize("kind", DAMAGES)
def test_corpus_damage_kind_applies_exactly(kind: str) -> None:
    damaged = DAMAGES[kind](DIFF, random.Random(kind))
    assert apply_diff(BASE, extract_diff(damaged)) == TARGET


@pytest.mark.parametrize("quoted", [
    "         super( ).__init__()",  # a space added inside
    "         super().__init__()  # as before",  # a trailing comment added
    "         super().__init__(self)",  # one token added
])
def test_a_misquoted_context_line_is_placed_by_the_other_lines_and_reported(quoted: str) -> None:
    notes: list[str] = []
    diff = CHANGE_KERNEL.replace("         super().__init__()", quoted)
    assert apply_diff(BASE, diff, notes) == KERNEL_TARGET  # the file's own context line is kept
    assert notes == [f"hunk 1: context lines misquoted: line 7 quoted {quoted[1:]!r}, the file has "
                     "'        super().__init__()'"]


def test_a_removed_line_may_differ_in_whitespace_only() -> None:
    spaced = CHANGE_KERNEL.replace("-        self.conv = nn.Conv2d(3, 32", "-        self.conv = nn.Conv2d( 3,32")
    assert apply_diff(BASE, spaced) == KERNEL_TARGET
    commented = CHANGE_KERNEL.replace("kernel_size=3)\n+", "kernel_size=3)  # old\n+")
    with pytest.raises(ApplyError, match="match nowhere"):
        apply_diff(BASE, commented)


def test_a_misquoted_context_line_that_fits_two_places_is_refused() -> None:
    twice = BASE.replace("    def forward(self, x):", "    def other(self):\n        super().__init__()\n"
                         "        self.conv = nn.Conv2d(3, 32, kernel_size=3)\n\n    def forward(self, x):")
    diff = "@@ -7,2 +7,2 @@\n         super( ).__init__()\n-        self.conv = nn.Conv2d(3, 32, kernel_size=3)\n" \
           "+        self.conv = nn.Conv2d(3, 32, kernel_size=5, padding=2)\n"
    with pytest.raises(ApplyError, match=r"ambiguous.*context lines misquoted"):
        apply_diff(twice, diff)


def test_shifted_line_numbers() -> None:
    assert apply_diff(BASE, CHANGE_KERNEL.replace("@@ -7,3 +7,3 @@", "@@ -40,3 +41,3 @@")) == KERNEL_TARGET


def test_wrong_hunk_counts() -> None:
    assert apply_diff(BASE, CHANGE_KERNEL.replace("@@ -7,3 +7,3 @@", "@@ -7,9 +7,2 @@")) == KERNEL_TARGET


@pytest.mark.parametrize("header", ["@@ ... @@", "@@", "@@ -7 @@ def __init__"])
def test_headers_without_full_numbers(header: str) -> None:
    assert apply_diff(BASE, CHANGE_KERNEL.replace("@@ -7,3 +7,3 @@", header)) == KERNEL_TARGET


def test_context_lines_missing_their_leading_space() -> None:
    diff = (
        "@@ -9,4 +9,5 @@\n        self.bn = nn.BatchNorm2d(32)\n-        self.relu = nn.ReLU()\n"
        "+        self.relu = nn.ReLU(inplace=True)\n\n        self.fc = nn.Linear(32, 10)\n"
    )
    assert apply_diff(BASE, diff) == BASE.replace("nn.ReLU()", "nn.ReLU(inplace=True)")


def test_whitespace_drift_in_context_keeps_added_indentation() -> None:
    drifted = CHANGE_KERNEL.replace(" super().__init__()", "  super().__init__()\t").replace(
        "-        self.conv", "-      self.conv"
    )
    assert apply_diff(BASE, drifted) == KERNEL_TARGET


def test_crlf_diff_and_crlf_base() -> None:
    assert apply_diff(BASE, CHANGE_KERNEL.replace("\n", "\r\n")) == KERNEL_TARGET
    crlf_base = BASE.replace("\n", "\r\n")
    assert apply_diff(crlf_base, CHANGE_KERNEL) == KERNEL_TARGET.replace("\n", "\r\n")


def test_missing_file_headers_and_headers_without_at_at() -> None:
    assert DIFF.startswith("--- a/model.py\n+++ b/model.py\n")
    assert apply_diff(BASE, DIFF.split("\n", 2)[2]) == TARGET
    headers_only = "--- a/model.py\n+++ b/model.py\n" + CHANGE_KERNEL.split("\n", 1)[1]
    assert apply_diff(BASE, headers_only) == KERNEL_TARGET


def test_zero_context_hunks() -> None:
    assert apply_diff(BASE, make_diff(BASE, TARGET, context=0)) == TARGET
    removal_only = (
        "@@ -99 +99 @@\n-        self.conv = nn.Conv2d(3, 32, kernel_size=3)\n"
        "+        self.conv = nn.Conv2d(3, 32, kernel_size=5, padding=2)\n"
    )
    assert apply_diff(BASE, removal_only) == KERNEL_TARGET


def test_pure_addition_without_context_is_placed_by_trusted_line_number() -> None:
    target = BASE.replace("import torch.nn as nn\n", "import torch.nn as nn\nimport math\n")
    assert apply_diff(BASE, "@@ -2,0 +3,1 @@\n+import math\n") == target


def test_trailing_prose_without_prefix_is_dropped() -> None:
    assert apply_diff(BASE, CHANGE_KERNEL + "This widens the receptive field.\n") == KERNEL_TARGET


def test_normalize_diff_emits_a_well_formed_diff() -> None:
    damaged = DAMAGES["LLM mix"](DIFF, random.Random(0))
    assert normalize_diff(BASE, extract_diff(damaged)) == DIFF


def test_end_of_file_without_newline() -> None:
    base, target = BASE.rstrip("\n"), TARGET.rstrip("\n")
    diff = make_diff(base, target)
    assert "\\ No newline at end of file" in diff
    assert apply_diff(base, diff) == target
    assert apply_diff(base, diff.replace("\\ No newline at end of file\n", "")) == target
    assert apply_diff(base, make_diff(base, TARGET)) == TARGET
    assert apply_diff(BASE, make_diff(BASE, target)) == target
