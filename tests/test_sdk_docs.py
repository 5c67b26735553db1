"""docs/sdk.md cannot rot: its python blocks compile, and (slow) run in order in a scratch directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "sdk.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_sdk_doc_blocks_compile() -> None:
    found = blocks()
    assert len(found) >= 4
    for i, code in enumerate(found):
        compile(code, f"{DOC.name} block {i}", "exec")


@pytest.mark.slow
def test_sdk_doc_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "sdk_doc"}
    for i, code in enumerate(blocks()):
        exec(compile(code, f"{DOC.name} block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "resumed: 2 candidates already recorded, 0 new" in out
    assert "search sdk-demo: 2 candidates" in out
    assert (tmp_path / "deltanas-sdk" / "llm_output.txt").exists()
