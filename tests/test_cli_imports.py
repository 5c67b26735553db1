"""`deltanas serve`, `up`, `apply` and `--help` run where the tracking stack is not installed (a service image):
each command runs in a fresh interpreter whose import system refuses mlflow, sqlalchemy and requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACKING = ("mlflow", "sqlalchemy", "requests")

# Installs a finder that refuses the tracking packages, then runs the CLI with the given argv.
BLOCKED_MAIN = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
sys.meta_path.insert(0, Refuse())
from client.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
assert not blocked & {m.partition(".")[0] for m in sys.modules}, "a blocked module was imported"
sys.exit(code)
"""


def run_cli(*argv: str, blocked: tuple[str, ...] = TRACKING) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED_MAIN, ",".join(blocked), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [
    ["--help"], ["serve", "evaluator", "--help"], ["serve", "generator", "--help"], ["serve", "curator", "--help"],
    ["up", "--help"], ["apply", "--help"], ["run", "--help"],
])
def test_commands_start_without_tracking_packages(argv: list[str]) -> None:
    proc = run_cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: deltanas"), proc.stdout


def test_apply_runs_without_tracking_packages(tmp_path: Path) -> None:
    base, diff, out = tmp_path / "m.py", tmp_path / "d.txt", tmp_path / "out.py"
    base.write_text("x = 1\ny = 2\n")
    diff.write_text("```diff\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n-x = 1\n+x = 3\n y = 2\n```\n")
    proc = run_cli("apply", str(base), str(diff), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "x = 3\ny = 2\n"


def test_the_block_is_real() -> None:
    """The same harness fails a command that does need tracking, so a pass above means something."""
    proc = run_cli("report", "no-such-search", "--tracking-uri", "sqlite:///:memory:")
    assert proc.returncode != 0 and "blocked for this test: mlflow" in proc.stderr, proc.stderr
