"""Refusals: a diff that does not fit for certain is refused with a one-line reason, never misapplied."""

import pytest

from deltadiff import ApplyError, DiffError, apply_diff, make_diff

BASE = """class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(x)
"""
ACT_HUNK = (
    "@@ ... @@\n     def __init__(self):\n         super().__init__()\n-        self.act = nn.ReLU()\n"
    "+        self.act = nn.GELU()\n"
)


def refusal(base: str, diff: str) -> str:
    with pytest.raises(ApplyError) as caught:
        apply_diff(base, diff)
    reason = str(caught.value)
    assert "\n" not in reason
    return reason


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(ApplyError, DiffError) and issubclass(DiffError, ValueError)


def test_ambiguous_match_is_refused() -> None:
    assert "ambiguous" in refusal(BASE, ACT_HUNK)


def test_ambiguous_match_is_refused_under_the_loosest_comparison_needed() -> None:
    assert "ambiguous" in refusal(BASE, ACT_HUNK.replace("    def", "  def"))


BLOCK_ACT = (
    "@@ -2,3 +2,3 @@\n     def __init__(self):\n         super().__init__()\n-        self.act = nn.ReLU()\n"
    "+        self.act = nn.GELU()\n"
)
RETURN = "@@ -11,2 +11,2 @@\n     def forward(self, x):\n-        return self.act(x)\n+        return x\n"


def test_ambiguous_match_is_placed_by_trustworthy_line_numbers() -> None:
    target = BASE.replace("ReLU()\n\nclass", "GELU()\n\nclass").replace("return self.act(x)", "return x")
    assert apply_diff(BASE, BLOCK_ACT + RETURN) == target


def test_ambiguous_match_is_placed_by_hunk_order() -> None:
    head = rows("@@", "-class Head(nn.Module):", "+class Head(nn.Module):  # classifier")
    target = BASE.replace("class Head(nn.Module):", "class Head(nn.Module):  # classifier")
    target = target.replace("ReLU()\n\n    def", "GELU()\n\n    def")
    assert apply_diff(BASE, head + BLOCK_ACT.replace("@@ -2,3 +2,3 @@", "@@")) == target


def test_untrustworthy_line_numbers_do_not_resolve_ambiguity() -> None:
    assert "ambiguous" in refusal(BASE, BLOCK_ACT + RETURN.replace("-11,2 +11,2", "-20,2 +20,2"))


def rows(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_hunk_that_fits_nowhere_is_refused() -> None:
    diff = rows("@@ -1,2 +1,2 @@", " class Block(nn.Module):", "-    def forward(self):", "+    x")
    reason = refusal(BASE, diff)
    assert "hunk 1" in reason and "match nowhere" in reason


def test_context_mismatch_at_the_stated_line_is_refused_and_explained() -> None:
    diff = rows("@@ -11,2 +11,2 @@", "     def forward(self, x, y):", "-        return self.act(x)", "+  x")
    reason = refusal(BASE, diff)
    assert "at line 11" in reason and "def forward(self, x, y):" in reason


def test_only_the_context_differs_is_still_refused() -> None:
    diff = rows(
        "@@ -3,3 +3,3 @@",
        "         super().__init__()",
        "-        self.act = nn.ReLU()",
        "+        self.act = nn.GELU()",
        "         self.drop = nn.Dropout()",
    )
    assert "match nowhere" in refusal(BASE, diff)


def test_overlapping_hunks_are_refused() -> None:
    first = rows(
        "@@ -6,3 +6,3 @@",
        " class Head(nn.Module):",
        "-    def __init__(self):",
        "+    def __init__(self, width):",
        "         super().__init__()",
    )
    second = rows(
        "@@ -7,5 +7,5 @@",
        "     def __init__(self):",
        "         super().__init__()",
        "-        self.act = nn.ReLU()",
        "+        self.act = nn.GELU()",
        " ",
        "     def forward(self, x):",
    )
    assert "overlaps" in refusal(BASE, first + second)


def test_hunks_out_of_order_are_refused() -> None:
    target = BASE.replace("class Block", "class Stem").replace("return self.act(x)", "return x")
    hunks = make_diff(BASE, target, context=1).split("\n@@")
    swapped = "@@" + hunks[2] + "\n@@" + hunks[1]
    assert "precedes" in refusal(BASE, swapped)


def test_pure_addition_without_context_and_numbers_is_refused() -> None:
    assert "cannot be trusted" in refusal(BASE, "@@ ... @@\n+import math\n")


def test_diff_for_several_files_is_refused() -> None:
    diff = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-x\n+y\n"
    assert "2 files" in refusal("x\n", diff)


def test_diff_without_changes_is_refused() -> None:
    assert "no hunk" in refusal(BASE, "@@ -1,1 +1,1 @@\n class Block(nn.Module):\n")
