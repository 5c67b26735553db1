"""Measured pairs: both sides of a pair re-trained by a real evaluator under one budget; a pair is kept only where
one side wins beyond the seed spread, and a restart re-measures nothing.

    .venv/bin/python -m pytest -q tests/test_curator_measured.py
"""

from __future__ import annotations

import json

import pytest

from curator_svc.measured import MeasureConfig, Measurements, PairMeasurer, measurable, measured_pairs
from curator_svc.pairing import make_pair
from tests.support.evaluation import CountingPool
from tests.support.tiny import ADAM, BASELINE, TINY

# The whole digits split; no seed-0 cascade bar (min_points 0), so every pair whose sides differ gets all seeds.
CFG = MeasureConfig(datasets=["digits"], train_limit=0, test_limit=0, seeds=3, min_points=0.0, timeout_s=120)
WIDER = TINY.replace("torch.nn.Linear(size, 32), torch.nn.ReLU(),\n                                          "
                     "torch.nn.Linear(32, out_shape[0])",
                     "torch.nn.Linear(size, 33), torch.nn.ReLU(),\n                                          "
                     "torch.nn.Linear(33, out_shape[0])")
FROZEN = TINY.replace("lr=self.lr, momentum=self.momentum", "lr=0.0")  # learns nothing: stays at chance


def _model(name: str, code: str, accuracy: float):
    return BASELINE.__class__(name=name, dataset="digits", code=code, accuracy=accuracy,
                              hyperparameters=BASELINE.hyperparameters, batch=32, transform="norm")


PAIRS = [make_pair(_model("sgd", TINY, 0.5), _model("adam", ADAM, 0.9)),      # Adam wins by far
         make_pair(_model("adam", ADAM, 0.5), _model("sgd", TINY, 0.6)),      # LEMUR's order is wrong: reversed
         make_pair(_model("sgd", TINY, 0.5), _model("wider", WIDER, 0.51)),   # one more unit: within the spread
         make_pair(_model("sgd", TINY, 0.5), _model("frozen", FROZEN, 0.6))]  # a side at chance: failed


@pytest.fixture(scope="module")
def measured(evaluator_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("measured")
    return out, PairMeasurer(CFG, evaluator_pool, Measurements(out / "measurements.jsonl")).measure(PAIRS)


def test_a_winning_pair_is_kept_and_one_within_the_spread_is_dropped(measured) -> None:
    _, results = measured
    verdicts = [m.verdict for m in results]
    assert verdicts == ["kept", "reversed", "within_spread", "failed"], [(m.verdict, m.gain, m.threshold)
                                                                          for m in results]
    adam = results[0]
    assert len(adam.baseline.accuracies) == len(adam.improved.accuracies) == 3
    assert adam.gain == pytest.approx(100 * (adam.improved.mean - adam.baseline.mean))
    assert adam.gain > adam.threshold >= max(2 * 100 * max(adam.baseline.spread, adam.improved.spread), 0.0)
    wider = results[2]
    assert abs(wider.gain) <= wider.threshold
    assert "not above chance" in results[3].improved.failure


def test_kept_pairs_become_training_pairs_with_the_measured_gain_and_facts(measured) -> None:
    _, results = measured
    train = measured_pairs(results)
    assert [(p.baseline.name, p.improved.name) for p in train] == [("sgd", "adam"), ("sgd", "adam")]
    for pair in train:  # the reversed pair trains the change the right way round, with its own measured facts
        assert "torch.optim.Adam" in pair.diff and pair.measured_gain == pytest.approx(results[0].gain)
        assert pair.budget.accuracy == pytest.approx(results[0].baseline.mean)
        assert pair.budget.seeds == 3 and pair.budget.train_images == 1437 and pair.budget.num_params > 1000


def test_a_restart_measures_nothing_again(measured, evaluator_pool) -> None:
    out, results = measured
    counting = CountingPool(evaluator_pool)
    again = PairMeasurer(CFG, counting, Measurements(out / "measurements.jsonl")).measure(PAIRS)
    assert counting.submitted == [] and [m.verdict for m in again] == [m.verdict for m in results]
    rows = [json.loads(line) for line in (out / "measurements.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["key"] for r in rows})  # every training once


def test_only_cheap_learning_pairs_of_models_never_held_out_are_measured() -> None:
    from deltanas.heldout import is_held_out

    held = next(f"m{i}" for i in range(1000) if is_held_out(f"m{i}"))
    pairs = [make_pair(_model("a", TINY, 0.95), _model("b", ADAM, 0.97)),
             make_pair(_model(held, TINY, 0.95), _model("b", ADAM, 0.97)),        # held out
             make_pair(_model("a", TINY, 0.20), _model("b", ADAM, 0.97)),         # LEMUR: learns slowly
             make_pair(_model("slow", TINY, 0.95), _model("b", ADAM, 0.97))]      # LEMUR: takes long
    seconds = {"a": 10.0, "b": 20.0, held: 5.0, "slow": 500.0}
    cfg = MeasureConfig(datasets=["digits"], batch_range=[8, 32])
    assert [(p.baseline.name, p.improved.name) for p in measurable(pairs, cfg, seconds)] == [("a", "b")]
