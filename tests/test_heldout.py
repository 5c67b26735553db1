"""The held-out split (deltanas.heldout) on real LEMUR data: no built dataset holds a held-out model, the
embedded preset's baseline is held out, and the validity benchmark draws only held-out baselines.

.venv/bin/pytest tests/test_heldout.py
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from client.cli import PRESET_DIR
from curator_svc.dataset import EVAL_FILE, TRAIN_FILE, DatasetConfig, build_datasets
from curator_svc.lemur import LemurIndex
from curator_svc.pairing import PairingConfig, pair_baselines
from deltanas.heldout import is_held_out
from deltanas.model_sources import load_tokenizer
from deltanas.testing.baselines import pick
from deltanas.testing.candidates import MODEL
from tests.support.tokenizer import WhitespaceTokenizer


@pytest.fixture(scope="module")
def mnist() -> list:
    return LemurIndex.load().baselines("mnist")


def test_rule_is_the_documented_hash() -> None:
    names = [f"model-{i}" for i in range(2000)]
    held = [n for n in names if is_held_out(n)]
    assert held == [n for n in names if int(hashlib.sha256(n.encode()).hexdigest(), 16) % 10 == 0]
    assert 150 < len(held) < 250  # about one in ten


def test_a_dataset_built_from_lemur_holds_no_held_out_model(mnist: list, tmp_path: Path) -> None:
    held = [b for b in mnist if is_held_out(b.name)]
    assert len(held) > 100  # the rule really removes something from this dataset
    pairs, _ = pair_baselines(mnist, PairingConfig(max_pairs_per_dataset=10_000))
    assert pairs and not any(is_held_out(p.baseline.name) or is_held_out(p.improved.name) for p in pairs)
    unfiltered, _ = pair_baselines(mnist, PairingConfig(max_pairs_per_dataset=10_000, exclude_held_out=False))
    assert any(is_held_out(p.baseline.name) or is_held_out(p.improved.name) for p in unfiltered)
    # the dataset filter is the last guard, even for pairs made without the pairing's exclusion
    built = build_datasets(unfiltered, tmp_path, WhitespaceTokenizer(), DatasetConfig(), modes=("delta", "full"))
    for ds in built.values():
        for file in (TRAIN_FILE, EVAL_FILE):
            for line in (ds.path / file).read_text().splitlines():
                meta = json.loads(line)["meta"]
                assert not is_held_out(meta["baseline"]) and not is_held_out(meta["improved"]), meta
        assert ds.counts["not_held_out"] < ds.counts["pairs"]


def test_the_embedded_baseline_is_held_out() -> None:
    preset = tomllib.loads((PRESET_DIR / "embedded.toml").read_text())
    assert preset["baseline_names"] and all(is_held_out(n) for n in preset["baseline_names"])


def test_the_generation_benchmarks_draw_held_out_baselines(mnist: list) -> None:
    picked = pick(mnist, 10, 64, 1100, load_tokenizer("smollm2-135m"), (MODEL,))
    assert len(picked) == 10 and all(is_held_out(b.name) and b.dataset == "mnist" for b in picked)
    assert picked[0].name == MODEL
