"""curator_svc.novelty: tokens, near-duplicate queries and dedupe on real LEMUR code.

.venv/bin/pytest tests/test_curator_novelty.py
"""

from __future__ import annotations

import pytest

from curator_svc.lemur import LemurIndex
from curator_svc.novelty import NoveltyConfig, NoveltyIndex, code_tokens


@pytest.fixture(scope="module")
def codes() -> dict[str, str]:
    index = LemurIndex.load(datasets=("mnist",))
    return {name: index.code(name) for name in ("AirNet", "AlexNet")}


def test_tokens_drop_comments_and_whitespace() -> None:
    assert code_tokens("x  =  f(1)   # note\n\n") == ["x", "=", "f", "(", "1", ")"]
    assert code_tokens("s = '# not a comment'") == ["s", "=", "'# not a comment'"]


def test_near_duplicate_detected(codes: dict[str, str]) -> None:
    index = NoveltyIndex()
    index.add("AirNet", codes["AirNet"])
    edited = "# tuned\n" + codes["AirNet"].replace(
        "channels = [64, 128, 256, 512]", "channels = [64, 128, 256, 384]"
    )
    jaccard, nearest = index.query(edited)
    assert nearest == "AirNet" and jaccard >= index.config.threshold
    assert not index.is_novel(edited)
    assert index.query(codes["AirNet"].replace("    ", "  ")) == (1.0, "AirNet")  # whitespace only


def test_different_model_is_novel(codes: dict[str, str]) -> None:
    index = NoveltyIndex()
    index.add("AirNet", codes["AirNet"])
    assert index.query(codes["AlexNet"]) == (0.0, None)
    assert index.is_novel(codes["AlexNet"])


def test_dedupe_keeps_first_of_each_group(codes: dict[str, str]) -> None:
    items = [("a", codes["AirNet"]), ("b", codes["AlexNet"]), ("a2", "# copy\n" + codes["AirNet"])]
    index = NoveltyIndex(NoveltyConfig(num_perm=64, shingle=5, threshold=0.8))
    assert [k for k, _ in index.dedupe(items)] == ["a", "b"]
    assert len(index) == 2 and "a2" not in index
    with pytest.raises(KeyError):
        index.add("a", codes["AirNet"])
