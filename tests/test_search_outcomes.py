"""Outcomes against same-budget references, and a search that climbs: judged on a real evaluator over gRPC with a
real MLflow store; the selection policies on an archive built by hand.

    .venv/bin/python -m pytest -q tests/test_search_outcomes.py
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import deltadiff
from client.config import SearchConfig
from client.records import CandidateResult
from client.search.archive import Archive, Program
from client.search.outcomes import NoiseRule, Outcome, judge
from client.search.references import Reference, References
from client.search.selection import Evolve, Paging
from client.tracking import Tracker
from deltanas.baseline import Baseline
from deltanas.v1 import evaluator_pb2
from deltanas.vocabulary import REFERENCE_TAG, ROLE_TAG
from tests.support.evaluation import CountingPool
from tests.support.tiny import ADAM, BASELINE, NO_OP, SETTINGS, TINY, answer


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("outcomes")
    return f"sqlite:///{path / 'mlflow.db'}", path / "journal"


@pytest.fixture(scope="module")
def reference(evaluator_pool, store) -> Reference:
    uri, journal = store
    refs = References(Tracker(uri, "deltanas", journal_dir=journal), evaluator_pool, seeds=3, timeout_s=120)
    found = refs.prepare([(BASELINE.name, TINY, SETTINGS)])
    return found[refs.key(SETTINGS, TINY)]


def _candidate(pool, code: str, cid: str) -> evaluator_pb2.EvaluateResponse:
    request = SETTINGS.request(f"outcomes/{cid}", cid, seed=0, timeout_s=120, delta_answer=answer(code),
                               baseline_code=TINY)
    return pool.submit(request).result()


def test_the_reference_is_the_baseline_under_the_candidates_settings_with_three_seeds(reference) -> None:
    assert reference.learns, reference.failure
    assert len(reference.accuracies) == 3 and len(set(reference.accuracies)) > 1  # seeds change the training
    assert reference.spread > 0 and 0.1 < reference.mean < 0.8 and len(reference.digest) == 64
    assert reference.num_params > 1000 and reference.train_images == 1437  # the whole digits train split


def test_a_change_that_trains_the_same_model_has_no_effect(evaluator_pool, reference) -> None:
    reply = _candidate(evaluator_pool, NO_OP, "noop")
    assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, reply.failure_reason
    verdict = judge(True, reply.accuracy, reply.predictions_digest, reference, NoiseRule())
    assert verdict.outcome == Outcome.NO_EFFECT and not verdict.outcome.effective
    assert reply.accuracy == reference.accuracies[0]  # seed 0, the reference's own run


def test_a_better_optimizer_is_improved_beyond_the_seed_spread(evaluator_pool, reference) -> None:
    reply = _candidate(evaluator_pool, ADAM, "adam")
    verdict = judge(True, reply.accuracy, reply.predictions_digest, reference, NoiseRule())
    assert verdict.outcome == Outcome.IMPROVED, (reply.accuracy, reference.accuracies)
    assert verdict.gain == pytest.approx(100 * (reply.accuracy - reference.mean))
    assert verdict.gain > verdict.threshold >= max(2 * 100 * reference.spread, 1.0)


def test_references_are_kept_in_the_store_and_reused_without_training(evaluator_pool, store, reference) -> None:
    uri, journal = store
    counting = CountingPool(evaluator_pool)
    again = References(Tracker(uri, "deltanas", journal_dir=journal), counting, seeds=3, timeout_s=120)
    found = again.prepare([(BASELINE.name, TINY, SETTINGS)])
    assert counting.submitted == [] and found[again.key(SETTINGS, TINY)] == reference
    tracker = Tracker(uri, "deltanas", journal_dir=journal)
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{ROLE_TAG}` = 'reference'")
    assert [r.data.tags[REFERENCE_TAG] for r in runs] == [again.key(SETTINGS, TINY)]
    # Comments and layout do not make another program: the same reference.
    assert again.key(SETTINGS, "# a comment\n" + TINY) == again.key(SETTINGS, TINY)
    assert again.key(replace(SETTINGS, train_limit=500), TINY) != again.key(SETTINGS, TINY)


def test_a_baseline_that_stays_at_chance_does_not_learn(evaluator_server, store) -> None:
    import grpc

    from deltanas.evaluator_pool import EvaluatorPool
    from deltanas.v1 import evaluator_pb2_grpc

    uri, journal = store
    frozen = TINY.replace("lr=self.lr, momentum=self.momentum", "lr=0.0")  # nothing is learned
    with grpc.insecure_channel(evaluator_server.address) as channel:
        one_slot = EvaluatorPool({evaluator_server.address: evaluator_pb2_grpc.EvaluatorServiceStub(channel)},
                                 {evaluator_server.address: 1}, deadline_s=300)
        try:
            refs = References(Tracker(uri, "deltanas", journal_dir=journal), one_slot, seeds=4, timeout_s=120)
            ref = refs.prepare([("frozen", frozen, SETTINGS)])[refs.key(SETTINGS, frozen)]
        finally:
            one_slot.close()
    assert not ref.learns and ref.failure.startswith("seed 0: evaluate: accuracy") and "not above chance" in ref.failure
    # One slot: seed 0 trained first and failed, so seeds 1-3 were cancelled while queued and never trained.
    assert ref.seeds == 1 and ref.accuracies == ()


# -- selection policies on a hand-built archive --------------------------------------------------------------------

def _ref(name: str, mean: float) -> Reference:
    return Reference(f"k-{name}", name, "mnist", (mean - 0.01, mean, mean + 0.01), f"d-{name}", 1000, 1.0, "", 3, 4000)


def _program(name: str, mean: float, cycle: int = 0, parent: str = "") -> Program:
    base = Baseline(name=name, dataset="mnist", code=f"x = '{name}'\n", accuracy=mean)
    return Program(base, parent or name, _ref(name, mean), cycle, parent, 1 if parent else 0)


def _result(cid: str, parent: str, cycle: int, outcome: str) -> CandidateResult:
    return CandidateResult(cid, cycle, parent, "mnist", "delta", 0, "valid", "", "", 0.5, 0.0, 3, 100, 5, 1.0, 1.0,
                           outcome=outcome, gain=5.0 if outcome == "improved" else 0.0, threshold=2.0,
                           code_key=f"key-{cid}", change=f"-a | +{cid}")


class NoFreshRoots:
    def fresh(self, dataset: str, cycle: int, exclude: set[str]) -> Program | None:
        return None


def _archive() -> Archive:
    """Two LEMUR roots; the weaker one's candidate improved it in cycle 0 and was confirmed: a parent now."""
    archive = Archive()
    for program in (_program("root-a", 0.60), _program("root-b", 0.30)):
        archive.add(program)
    archive.record(_result("c0-a", "root-a", 0, "no_effect"))
    archive.record(_result("c0-b", "root-b", 0, "improved"))
    archive.add(_program("c0-b", 0.70, cycle=0, parent="root-b"))
    return archive


def test_evolve_is_deterministic_for_a_seed_and_draws_the_improved_child() -> None:
    cfg = SearchConfig(selection="evolve", seed=3, evolve_exploration=0.0)
    first = [p.id for p in Evolve(cfg).parents(1, "mnist", 3, _archive(), NoFreshRoots())]
    again = [p.id for p in Evolve(SearchConfig(selection="evolve", seed=3, evolve_exploration=0.0)).parents(
        1, "mnist", 3, _archive(), NoFreshRoots())]
    assert first == again
    assert first[0] == "c0-b"  # the island's best program (elitism): the confirmed improved child
    assert sorted(first) == ["c0-b", "root-a", "root-b"]  # three draws from three programs, none twice
    assert [p.id for p in Evolve(cfg).parents(1, "svhn", 1, _archive(), NoFreshRoots())] == []  # another island


def test_evolve_turns_away_from_a_program_that_stopped_paying() -> None:
    cfg = SearchConfig(selection="evolve", seed=0, evolve_exploration=0.0, evolve_patience=1)
    archive = _archive()
    archive.record(_result("c1-x", "c0-b", 1, "worse"))  # the child was a parent in cycle 1 without improving
    weights = {p.id: Evolve(cfg).weight(p, rank, archive, 2)
               for rank, p in enumerate(sorted(archive.parents("mnist", 2), key=lambda p: -p.fitness))}
    # rank 0 with one fruitless visit: 1/1 x 0.5; root-a rank 1, its cycle-0 candidate had no effect: 1/2 x 0.5;
    # root-b rank 2, improved in cycle 0: 1/3.
    assert weights == pytest.approx({"c0-b": 0.5, "root-a": 0.25, "root-b": 1 / 3})
    assert archive.fruitless_visits("c0-b", 2) == 1 and archive.fruitless_visits("root-b", 2) == 0
    # Past its patience the best program is no longer a parent by right: draws decide, over all three.
    drawn = {p.id for seed in range(30) for p in Evolve(replace(cfg, seed=seed)).parents(
        2, "mnist", 1, archive, NoFreshRoots())}
    assert drawn == {"c0-b", "root-a", "root-b"}


def test_paging_takes_fresh_roots_and_never_a_candidate() -> None:
    class Fresh:
        def __init__(self) -> None:
            self.taken: list[str] = []

        def fresh(self, dataset: str, cycle: int, exclude: set[str]) -> Program | None:
            name = next(n for n in ("root-c", "root-d", "root-e") if n not in exclude)
            self.taken.append(name)
            return _program(name, 0.4, cycle)

    roots = Fresh()
    assert [p.id for p in Paging(SearchConfig()).parents(1, "mnist", 2, _archive(), roots)] == ["root-c", "root-d"]


def test_the_prompt_history_and_dedup_keys_of_a_parent() -> None:
    archive = _archive()
    tried = archive.tried("root-b", 8)
    assert [(t.change, t.outcome) for t in tried] == [("-a | +c0-b", "improved (+5.0 points)")]
    seen = archive.seen(archive.programs["root-b"])
    assert seen[deltadiff.code_fingerprint("x = 'root-b'\n")] == "root-b"  # the parent itself: a no-op
    assert seen["key-c0-b"] == "c0-b"


def test_judge_classes_and_threshold() -> None:
    ref = Reference("k", "p", "mnist", (0.50, 0.52, 0.54), "d0", 10, 1.0, "", 3, 100)  # spread 2 points
    rule = NoiseRule(spread_factor=2.0, min_points=1.0)
    assert rule.threshold(ref) == pytest.approx(4.0)
    assert judge(True, 0.57, "d1", ref, rule).outcome == Outcome.IMPROVED  # +5 > 4
    assert judge(True, 0.55, "d1", ref, rule).outcome == Outcome.WITHIN_NOISE  # +3
    assert judge(True, 0.47, "d1", ref, rule).outcome == Outcome.WORSE  # -5
    no_op = judge(True, 0.60, "d0", ref, rule)  # the same predictions as seed 0, which scored above the mean
    assert no_op.outcome == Outcome.NO_EFFECT and no_op.gain == 0.0
    assert judge(False, 0.0, "", ref, rule).outcome == Outcome.INVALID
    flat = Reference("k", "p", "mnist", (0.5,), "d0", 10, 1.0, "", 1, 100)
    assert NoiseRule(2.0, 1.0).threshold(flat) == 1.0  # one seed: the floor in points


def test_selection_and_outcome_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="selection: must be one of paging, evolve"):
        SearchConfig(selection="greedy")
    with pytest.raises(ValueError, match="reference_seeds: must be at least 1"):
        SearchConfig(reference_seeds=0)
    with pytest.raises(ValueError, match="evolve_decay: must be within"):
        SearchConfig(evolve_decay=0.0)


def test_prompt_states_the_budget_and_what_was_tried() -> None:
    from deltanas.baseline import Budget
    from deltanas.prompts import Tried, render_messages

    budget = Budget(accuracy=0.3125, spread=0.0213, seeds=3, train_images=4000, num_params=10234, train_seconds=2.46)
    user = render_messages("delta", BASELINE, budget=budget,
                           tried=[Tried("-a | +b", "no effect (the same predictions)")])[1]["content"]
    assert "Trained for 1 epoch(s) on 4000 images" in user and "10,234 parameters" in user
    assert "reaches accuracy 0.3125 (seed spread 0.0213 over 3 seeds) in 2.5 s" in user
    assert "- -a | +b: no effect (the same predictions)" in user and "do not repeat" in user
    plain = render_messages("delta", BASELINE)[1]["content"]
    assert plain.startswith("Task: img-classification on digits. This model reaches accuracy 0.5000 after 1")
