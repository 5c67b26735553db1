"""Extraction of diffs and code from raw LLM text, and diff measurement."""

import pytest

from deltadiff import DiffStats, ExtractError, extract_code, extract_diff, make_diff, measure

DIFF = "--- a/model.py\n+++ b/model.py\n@@ -1,2 +1,2 @@\n import torch\n-x = 1\n+x = 2\n"
CODE = "import torch\n\n\nclass Net:\n    pass\n"


@pytest.mark.parametrize(
    "text",
    [
        f"Here is the change:\n\n```diff\n{DIFF}```\n\nIt raises the width.",
        f"Sure.\n```\n{DIFF}```\nDone.",
        f"```patch\n{DIFF}```",
        f"<diff>\n{DIFF}</diff>\nThat is all.",
        f"<diff>\n```diff\n{DIFF}```\n</diff>",
        f"The model improves if we change x.\n{DIFF}\nThis change is small.",
        f"```diff\n{DIFF}",  # generation stopped before the closing fence
        DIFF,
    ],
    ids=["diff-fence", "bare-fence", "patch-fence", "tags", "fence-in-tags", "prose", "unclosed", "plain"],
)
def test_extract_diff(text: str) -> None:
    assert extract_diff(text) == DIFF


def test_extract_diff_normalizes_crlf() -> None:
    assert extract_diff(f"```diff\r\n{DIFF}```\r\n".replace("\n", "\r\n").replace("\r\r", "\r")) == DIFF


def test_extract_diff_prefers_the_diff_fence_over_code_fences() -> None:
    assert extract_diff(f"```python\n{CODE}```\nand the diff:\n```diff\n{DIFF}```") == DIFF


def test_extract_diff_finds_a_bare_diff_beside_code_fences() -> None:
    assert extract_diff(f"Before:\n```python\n{CODE}```\nChange:\n{DIFF}") == DIFF


def test_extract_diff_joins_hunks_split_over_fences() -> None:
    second = "@@ -9,1 +9,1 @@\n-y = 1\n+y = 2\n"
    assert extract_diff(f"```diff\n{DIFF}```\nthen\n```diff\n{second}```") == DIFF + second


def test_extract_diff_accepts_a_diff_fence_without_headers() -> None:
    body = " import torch\n-x = 1\n+x = 2\n"
    assert extract_diff(f"```diff\n{body}```") == "@@\n" + body


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I would increase the number of channels.", "no diff found"),
        (f"```python\n{CODE}```", "no diff found"),
        ("```diff\n@@ -1,2 +1,2 @@\n import torch\n x = 1\n```", "no added or removed"),
    ],
)
def test_extract_diff_refuses_text_without_a_diff(text: str, reason: str) -> None:
    with pytest.raises(ExtractError, match=reason):
        extract_diff(text)


def test_extract_code_takes_the_largest_python_block() -> None:
    text = f"Helper:\n```python\nx = 1\n```\nModel:\n```python\n{CODE}```\nOutput:\n```\n0.5\n```"
    assert extract_code(text) == CODE


def test_extract_code_accepts_unlabelled_blocks_and_whole_code() -> None:
    assert extract_code(f"```\n{CODE}```") == CODE
    assert extract_code(CODE) == CODE


def test_extract_code_refuses_prose() -> None:
    with pytest.raises(ExtractError, match="no python code"):
        extract_code("The model should use more layers.")


def test_make_diff_of_identical_texts_is_empty() -> None:
    assert make_diff(CODE, CODE) == ""


def test_measure_well_formed_and_damaged_diffs() -> None:
    assert measure(DIFF) == DiffStats(hunks=1, added=1, removed=1, lines=6)
    damaged = "@@\n import torch\n-x = 1\n+x = 2\n+y = 3\n@@ ... @@\n-z = 0\n"
    assert measure(damaged) == DiffStats(hunks=2, added=2, removed=2, lines=7)
    assert measure("") == DiffStats(0, 0, 0, 0)
