"""curator_svc.pairing on a slice of real LEMUR: invariants, brute-force minimality, caps and report.

.venv/bin/pytest tests/test_curator_pairing.py
"""

from __future__ import annotations

import pytest

from curator_svc.lemur import LemurIndex
from curator_svc.pairing import FILTERS, PairingConfig, _changes_and_lines, make_pair, pair_baselines
from deltadiff import apply_diff, make_diff, measure
from deltanas.baseline import Baseline
from deltanas.heldout import is_held_out

CONFIG = PairingConfig(min_gain=0.01, max_diff_lines=60, max_diffs=10_000, max_pairs_per_dataset=10_000)


@pytest.fixture(scope="module")
def group() -> list[Baseline]:
    """300 MNIST and 150 SVHN baselines (by name): big enough for families of near-identical models."""
    index = LemurIndex.load(datasets=("mnist", "svhn"))
    return index.baselines("mnist")[:300] + index.baselines("svhn")[:150]


@pytest.fixture(scope="module")
def paired(group: list[Baseline]):
    return pair_baselines(group, CONFIG)


def test_pair_invariants(paired) -> None:
    pairs, _ = paired
    assert len(pairs) > 50
    for p in pairs:
        b, i = p.baseline, p.improved
        assert (b.task, b.dataset, b.metric, b.epoch) == (i.task, i.dataset, i.metric, i.epoch)
        assert p.gain >= CONFIG.min_gain - 1e-9 and b.code != i.code
        assert p.diff_lines == measure(p.diff).lines <= CONFIG.max_diff_lines
    for p in pairs[:20]:
        assert apply_diff(p.baseline.code, p.diff) == p.improved.code


def test_partner_is_minimal_by_brute_force(group: list[Baseline], paired) -> None:
    pairs, _ = paired
    by_name = {(p.baseline.dataset, p.baseline.name): p for p in pairs}
    checked = [b for b in group if b.dataset == "mnist"][::37]
    for b in checked:
        sizes = []
        for other in group:
            if (
                other.dataset == b.dataset
                and other.accuracy >= b.accuracy + CONFIG.min_gain
                and other.code != b.code
            ):
                changes, lines = _changes_and_lines(make_diff(b.code, other.code))
                if lines <= CONFIG.max_diff_lines:
                    sizes.append(changes)
        got = by_name.get((b.dataset, b.name))
        if not sizes:
            assert got is None
        else:
            assert got is not None and _changes_and_lines(got.diff)[0] == min(sizes), b.name


def test_report_counts_are_monotone(paired, group: list[Baseline]) -> None:
    pairs, report = paired
    values = [report.counts[name] for name in FILTERS]
    kept = sum(not is_held_out(b.name) for b in group)  # held-out models are left out before pairing
    assert values == sorted(values, reverse=True) and values[0] == kept < 450 and values[-1] == len(pairs)
    assert set(report.per_dataset) == {"mnist", "svhn"}
    assert sum(d["kept"] for d in report.per_dataset.values()) == len(pairs)
    assert "total" in report.format()


def test_cap_per_dataset_is_balanced_and_deterministic(group: list[Baseline]) -> None:
    config = PairingConfig(max_pairs_per_dataset=7)
    pairs, report = pair_baselines(group, config)
    assert {d: c["kept"] for d, c in report.per_dataset.items()} == {"mnist": 7, "svhn": 7}
    assert [(p.baseline.name, p.improved.name) for p in pair_baselines(group, config)[0]] == [
        (p.baseline.name, p.improved.name) for p in pairs
    ]


def test_parallel_matches_serial(group: list[Baseline]) -> None:
    serial = pair_baselines(group[300:], PairingConfig())[0]
    parallel = pair_baselines(group[300:], PairingConfig(workers=2))[0]
    assert [(p.baseline.name, p.improved.name) for p in serial] == [
        (p.baseline.name, p.improved.name) for p in parallel
    ]


def test_make_pair_from_candidate(group: list[Baseline]) -> None:
    b = group[0]
    candidate = Baseline(
        name="cand-1", dataset=b.dataset, code=b.code + "\n# tweak\n", accuracy=b.accuracy + 0.1
    )
    pair = make_pair(b, candidate)
    assert pair.diff_lines == measure(pair.diff).lines and "+# tweak" in pair.diff
