"""Re-training: the cycle's most accurate valid candidates trained again for more epochs (the one-epoch proxy
against longer training, as the paper checks it).

    retrain_top(cfg, cycle_results, pool, tracker)    # logs accuracy_long / long_epochs on their child runs
"""

from __future__ import annotations

import logging

from client.config import SearchConfig
from client.records import CandidateResult
from client.tracking import Tracker
from deltanas.baseline import Baseline
from deltanas.evaluator_pool import EvaluatorPool
from deltanas.v1 import evaluator_pb2
from deltanas.vocabulary import CODE_FILE

log = logging.getLogger("deltanas.search.retrain")


def retrain_top(cfg: SearchConfig, results: list[CandidateResult], pool: EvaluatorPool, tracker: Tracker) -> None:
    """Re-trains the `retrain_top_k` most accurate valid `results` for `retrain_epochs` epochs (their patched code)
    and logs `accuracy_long` / `long_epochs` on their child runs; already re-trained ones are kept."""
    valid = [r for r in results if r.valid]
    pending = []
    for done in sorted(valid, key=lambda r: (-r.accuracy, r.candidate_id))[:cfg.retrain_top_k]:
        if done.accuracy_long is not None:
            continue
        cid = done.candidate_id
        trained = Baseline(cid, done.dataset, "", 0.0, hyperparameters=done.hyperparameters, batch=done.batch,
                           transform=done.transform)
        code = tracker.read_artifact(done.run_id, CODE_FILE)
        log.info("candidate %s: re-training for %d epochs", cid, cfg.retrain_epochs)
        pending.append((cid, pool.submit(cfg.settings(trained, epochs=cfg.retrain_epochs).request(
            f"{cfg.search_id}/{cid}/long{cfg.retrain_epochs}", cid, seed=0, timeout_s=cfg.retrain_timeout_s,
            code=code), deadline_s=cfg.retrain_timeout_s + 120)))
    for cid, future in pending:
        ev = future.result()
        if ev.status != evaluator_pb2.CANDIDATE_STATUS_VALID:
            log.warning("candidate %s: re-training failed (%s)", cid, ev.failure_reason[:200])
            continue
        tracker.update_candidate(cid, {"accuracy_long": ev.accuracy}, {"long_epochs": cfg.retrain_epochs})
        log.info("candidate %s: accuracy after %d epochs %.4f", cid, cfg.retrain_epochs, ev.accuracy)
