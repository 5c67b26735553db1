"""Real data: make_diff -> apply_diff round trips and the damage corpus over LEMUR model pairs."""

import shutil
from collections import Counter

import pytest
import unidiff

from deltadiff import DiffError, apply_diff, extract_diff, make_diff, measure, normalize_diff
from deltanas.testing.damage import corpus, gnu_patch, lemur_pairs

ROUND_TRIP_PAIRS = 300
CORPUS_PAIRS = 40


@pytest.fixture(scope="module")
def pairs():
    return lemur_pairs(ROUND_TRIP_PAIRS)


def test_round_trip_over_lemur_pairs(pairs) -> None:
    assert len(pairs) == ROUND_TRIP_PAIRS
    failures = []
    for pair in pairs:
        diff = make_diff(pair.old, pair.new)
        stats = measure(diff)
        assert stats.hunks >= 1 and stats.added + stats.removed >= 1
        if apply_diff(pair.old, diff) != pair.new:
            failures.append(pair.name)
    assert not failures


def test_round_trip_back_and_without_context(pairs) -> None:
    for pair in pairs[::10]:
        assert apply_diff(pair.new, make_diff(pair.new, pair.old)) == pair.old
        assert apply_diff(pair.old, make_diff(pair.old, pair.new, context=0)) == pair.new


def test_damage_corpus_is_recovered_and_never_misapplied() -> None:
    outcomes: Counter[str] = Counter()
    for variant in corpus(CORPUS_PAIRS):
        try:
            result = apply_diff(variant.base, extract_diff(variant.text))
        except DiffError:
            outcomes["refused" if variant.target is not None else "refused control"] += 1
            continue
        assert result == variant.target, f"{variant.kind}: {variant.pair} applied wrongly"
        outcomes["correct"] += 1
    recoverable = outcomes["correct"] + outcomes["refused"]
    assert outcomes["correct"] >= 0.95 * recoverable
    assert outcomes["refused control"] == 3 * CORPUS_PAIRS


@pytest.mark.skipif(not shutil.which("patch"), reason="GNU patch not installed")
def test_normalized_diffs_are_well_formed_for_unidiff_and_gnu_patch() -> None:
    checked = 0
    for variant in corpus(8):
        if variant.target is None:
            continue
        try:
            normalized = normalize_diff(variant.base, extract_diff(variant.text))
        except DiffError:
            continue  # refused (e.g. a misquoted hunk that fits two places): the corpus test counts these
        checked += 1
        assert len(unidiff.PatchSet(normalized)) == 1
        assert gnu_patch(variant.base, normalized) == variant.target, f"{variant.kind}: {variant.pair}"
    assert checked >= 90
