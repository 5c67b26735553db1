"""The sandboxed worker sees only the evaluator_svc package (bubblewrap mounts nothing else of the checkout):
its modules must import without deltanas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What `python -m evaluator_svc.worker` imports, in a fresh interpreter that refuses deltanas.
IMPORT_WORKER = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "deltanas":
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
sys.meta_path.insert(0, Refuse())
import evaluator_svc.worker, evaluator_svc.candidate, evaluator_svc.scoring, evaluator_svc.datasets
assert "deltanas" not in sys.modules
"""


def test_worker_modules_import_without_deltanas() -> None:
    proc = subprocess.run([sys.executable, "-c", IMPORT_WORKER], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_the_block_is_real() -> None:
    proc = subprocess.run([sys.executable, "-c", IMPORT_WORKER.replace("evaluator_svc.worker,", "deltanas.paths,")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "blocked for this test: deltanas" in proc.stderr, proc.stderr
