"""deltadiff.lines.replaced_line: which removed line the `+` line being written replaces (no tokenizer needed)."""

import pytest

from deltadiff.lines import replaced_line

HUNK = "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n x = 1\n-y = 2  \n-z = 3\n"


@pytest.mark.parametrize(("written", "expected"), [
    ("+y = 4", "y = 2"),            # the first + after two -: the first of them, trailing space stripped
    ("+y = 4\n+z = 5", "z = 3"),    # the second +: the second -
    ("+y = 4\n+z = 5\n+w", None),   # a third + has no counterpart
    (" q = 0", None),               # not a + line
])
def test_the_kth_added_line_replaces_the_kth_removed_one(written: str, expected: str | None) -> None:
    assert replaced_line(HUNK + written) == expected


def test_file_headers_are_no_change_lines() -> None:
    assert replaced_line("--- a/m.py\n+++ b/m.py") is None
