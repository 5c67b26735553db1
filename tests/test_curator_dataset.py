"""curator_svc.dataset: both modes from the same pairs, filters, content-hash ids, the empty-result error.

A whitespace tokenizer stands in for the model's (same interface), so these tests need no model files.

.venv/bin/pytest tests/test_curator_dataset.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curator_svc.dataset import (
    EVAL_FILE,
    MANIFEST_FILE,
    TRAIN_FILE,
    DatasetConfig,
    EmptyDatasetError,
    build_datasets,
)
from curator_svc.pairing import Pair, make_pair
from deltanas.baseline import Baseline
from deltanas.heldout import is_held_out
from tests.support.tokenizer import WhitespaceTokenizer

CODE = (
    "import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
    "    def __init__(self, in_shape, out_shape, prm, device):\n"
    "        super().__init__()\n        self.fc = nn.Linear({width}, out_shape[0])\n"
)


def _name(i: int) -> str:
    """A model name that is not held out, nor is its "-better" partner (deltanas.heldout)."""
    return next(n for k in range(100) if not is_held_out(n := f"m{i}.{k}") and not is_held_out(f"{n}-better"))


def _pairs(n: int, dataset: str = "mnist", first: int = 0, name=_name) -> list[Pair]:
    pairs = []
    for i in range(first, first + n):
        base = Baseline(name(i), dataset, CODE.format(width=10 + i), 0.5, hyperparameters={"lr": 0.01})
        better = Baseline(
            f"{base.name}-better", dataset, base.code + f"        self.drop{i} = nn.Dropout(0.{i})\n", 0.6
        )
        pairs.append(make_pair(base, better))
    return pairs


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_modes_from_the_same_pairs(tmp_path: Path) -> None:
    built = build_datasets(_pairs(8), tmp_path, WhitespaceTokenizer(), DatasetConfig(eval_fraction=0.25))
    delta, full = built["delta"], built["full"]
    assert delta.id != full.id and delta.train + delta.eval == 8 == full.train + full.eval
    for ds in (delta, full):
        assert {p.name for p in ds.path.iterdir()} == {TRAIN_FILE, EVAL_FILE, MANIFEST_FILE}
        manifest = json.loads((ds.path / MANIFEST_FILE).read_text())
        assert (
            manifest["id"] == ds.id
            and manifest["mode"] == ds.mode
            and manifest["counts"]["train"] == ds.train
        )
    d_rows, f_rows = _read(delta.path / TRAIN_FILE), _read(full.path / TRAIN_FILE)
    assert [r["meta"] for r in d_rows] == [r["meta"] for r in f_rows]
    assert (
        d_rows[0]["target"].startswith("```diff\n--- a/model.py")
        and "+        self.drop" in d_rows[0]["target"]
    )
    assert (
        f_rows[0]["target"].startswith("```python\nimport torch.nn") and "nn.Dropout" in f_rows[0]["target"]
    )
    assert d_rows[0]["messages"][0]["role"] == "system" and "m" in d_rows[0]["messages"][1]["content"]


def test_id_is_a_content_hash(tmp_path: Path) -> None:
    first = build_datasets(_pairs(6), tmp_path / "a", WhitespaceTokenizer())["delta"]
    again = build_datasets(list(reversed(_pairs(6))), tmp_path / "b", WhitespaceTokenizer())["delta"]
    assert first.id == again.id
    assert (first.path / TRAIN_FILE).read_bytes() == (again.path / TRAIN_FILE).read_bytes()
    same_root = build_datasets(_pairs(6), tmp_path / "a", WhitespaceTokenizer())["delta"]
    assert same_root.path == first.path
    other = build_datasets(_pairs(5), tmp_path / "a", WhitespaceTokenizer())["delta"]
    assert other.id != first.id


def test_filters_are_counted(tmp_path: Path) -> None:
    pairs = _pairs(4)
    identical = make_pair(pairs[0].baseline, pairs[0].baseline)
    same_diff = _pairs(1, dataset="svhn")  # the same target as pairs[0]: a duplicate
    extra = [*_pairs(2, dataset="svhn", first=10), *same_diff, identical]
    built = build_datasets(
        [*pairs, pairs[1]], tmp_path, WhitespaceTokenizer(), DatasetConfig(), modes=("delta",), extra=extra
    )
    counts = built["delta"].counts
    assert (counts["pairs"], counts["extra"], counts["nonempty"]) == (5, 4, 8)
    assert counts["unique_targets"] == 6 and counts["fits_tokens"] == 6 == counts["train"] + counts["eval"]


def test_token_limit_applies_to_every_mode(tmp_path: Path) -> None:
    tokenizer = WhitespaceTokenizer()
    delta_only = build_datasets(
        _pairs(3), tmp_path, tokenizer, DatasetConfig(max_tokens=200), modes=("delta",)
    )
    assert delta_only["delta"].counts["fits_tokens"] == 3
    with pytest.raises(
        EmptyDatasetError, match=r"pairs=3, extra=0, not_held_out=3, nonempty=3, unique_targets=3, fits_tokens=0"
    ):
        build_datasets(_pairs(3), tmp_path, tokenizer, DatasetConfig(max_tokens=5))


def test_empty_input_raises(tmp_path: Path) -> None:
    with pytest.raises(EmptyDatasetError, match="pairs=0"):
        build_datasets([], tmp_path, WhitespaceTokenizer())
    assert not any(tmp_path.iterdir())


def _held_out_name(i: int) -> str:
    return next(n for k in range(1000) if is_held_out(n := f"h{i}.{k}"))


def test_no_held_out_model_enters_a_dataset(tmp_path: Path) -> None:
    """Held out on either side of a LEMUR pair, or as the baseline of an accepted candidate: dropped, counted."""
    held = _pairs(3, name=_held_out_name)
    kept = _pairs(4, first=10)
    improved_held = [make_pair(p.baseline, Baseline(_held_out_name(50 + i), "mnist", p.improved.code, 0.7))
                     for i, p in enumerate(_pairs(2, first=20))]
    candidate_of_held = make_pair(held[0].baseline, Baseline("cand-1", "mnist", held[0].improved.code, 0.7))
    held_named_candidate = make_pair(kept[0].baseline, Baseline(_held_out_name(99), "mnist", CODE.format(width=7), 0.7))
    built = build_datasets([*held, *kept, *improved_held], tmp_path, WhitespaceTokenizer(),
                           DatasetConfig(eval_fraction=0.0), modes=("delta",),
                           extra=[candidate_of_held, held_named_candidate])["delta"]
    assert built.counts["pairs"] == 9 and built.counts["extra"] == 2
    # a candidate id is no LEMUR name: only its baseline decides, so the second candidate stays
    assert built.counts["not_held_out"] == 5
    rows = _read(built.path / TRAIN_FILE)
    assert {r["meta"]["baseline"] for r in rows} == {p.baseline.name for p in kept}
    assert not any(is_held_out(r["meta"]["improved"]) for r in rows if r["meta"]["improved"] != _held_out_name(99))


def test_per_dataset_cap_balances_datasets(tmp_path: Path) -> None:
    pairs = _pairs(6, "mnist") + _pairs(2, "svhn", first=30)
    built = build_datasets(pairs, tmp_path, WhitespaceTokenizer(),
                           DatasetConfig(eval_fraction=0.0, per_dataset=3), modes=("delta",))["delta"]
    assert built.counts["fits_tokens"] == 8 and built.counts["balanced"] == 5
    manifest = json.loads((built.path / MANIFEST_FILE).read_text())
    assert manifest["train_per_dataset"] == {"mnist": 3, "svhn": 2}
