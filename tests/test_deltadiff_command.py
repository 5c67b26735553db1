"""`deltanas apply` entry point: deltadiff.command.apply_command."""

from pathlib import Path

import pytest

from deltadiff.command import apply_command

BASE = "import torch\nx = 1\n"
DIFF = "Try this:\n```diff\n@@ -1,2 +1,2 @@\n import torch\n-x = 1\n+x = 2\n```\n"


def test_apply_command_writes_the_result(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text(BASE)
    (tmp_path / "raw.txt").write_text(DIFF)
    assert apply_command(tmp_path / "base.py", tmp_path / "raw.txt", tmp_path / "out.py") == 0
    assert (tmp_path / "out.py").read_text() == "import torch\nx = 2\n"


@pytest.mark.parametrize(
    ("diff", "reason"),
    [(DIFF.replace("x = 1", "x = 3"), "match nowhere"), ("no diff here", "no diff found")],
)
def test_apply_command_refuses_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], diff: str, reason: str
) -> None:
    (tmp_path / "base.py").write_text(BASE)
    (tmp_path / "raw.txt").write_text(diff)
    assert apply_command(tmp_path / "base.py", tmp_path / "raw.txt", tmp_path / "out.py") == 1
    err = capsys.readouterr().err
    assert err.startswith("deltanas apply: refused: ") and reason in err and err.count("\n") == 1
    assert not (tmp_path / "out.py").exists()


def test_apply_command_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert apply_command(tmp_path / "nope.py", tmp_path / "nope.txt", tmp_path / "out.py") == 1
    assert capsys.readouterr().err.startswith("deltanas apply: refused: ")
