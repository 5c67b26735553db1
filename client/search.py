"""The search loop: baselines -> LLM candidates -> sandboxed evaluation -> novelty -> MLflow.

    from client.search import SearchConfig, run_search
    result = run_search(SearchConfig(datasets=["mnist"], candidates=3), services, tracker)

Candidate ids are deterministic (search id, cycle, baseline, mode, index), so a resumed search skips what
its MLflow parent run already holds and records every candidate exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

from client.scheduler import EvaluatorPool
from client.sdk import Services
from client.tracking import CODE_FILE, DIFF_FILE, FAILURE_FILE, RAW_OUTPUT_FILE, CandidateRecord, Tracker
from deltanas.config import option
from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2

log = logging.getLogger("deltanas.search")

MODES = {"delta": common_pb2.MODE_DELTA, "full": common_pb2.MODE_FULL}


@dataclass
class SearchConfig:
    """What one search does; validated before any work starts."""

    search_id: str = option("", "id of the search (and its MLflow parent run); empty: a new one")
    datasets: list[str] = option(["mnist"], "datasets to draw baselines from")
    baselines: int = option(1, "baselines per dataset and cycle")
    baseline_names: list[str] = option([], "only these LEMUR models (empty: any)")
    candidates: int = option(3, "candidates per baseline and mode")
    modes: list[str] = option(["delta"], "delta, full, or both for an A/B search")
    cycles: int = option(1, "search cycles")
    temperature: float = option(0.35, "sampling temperature")
    top_k: int = option(50, "top-k sampling")
    top_p: float = option(0.9, "nucleus sampling")
    max_new_tokens: int = option(1024, "longest LLM answer in tokens")
    seed: int = option(0, "base seed; candidate i of a baseline uses a seed derived from it")
    adapter: str = option("", "generator adapter name (empty: the base model)")
    epochs: int = option(1, "training epochs per candidate")
    train_limit: int = option(0, "train images per candidate (0: the whole split)")
    test_limit: int = option(0, "test images per candidate (0: the whole split)")
    eval_timeout_s: float = option(900.0, "wall-clock limit of one candidate's sandboxed run")
    accept_accuracy: float = option(0.0, "accuracy a valid candidate needs to be accepted, in [0, 1]")
    experiment: str = option("deltanas", "MLflow experiment")

    def __post_init__(self) -> None:
        checks = [
            (self.candidates >= 1, "candidates", "must be at least 1"),
            (self.cycles >= 1, "cycles", "must be at least 1"),
            (self.baselines >= 1, "baselines", "must be at least 1"),
            (bool(self.datasets), "datasets", "must name at least one dataset"),
            (bool(self.modes) and set(self.modes) <= set(MODES), "modes", f"must be a subset of {sorted(MODES)}"),
            (0.0 <= self.accept_accuracy <= 1.0, "accept_accuracy", "must be within [0, 1]"),
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise ValueError(f"{name}: {problem} (got {getattr(self, name)!r})")
        if not self.search_id:
            self.search_id = time.strftime("s%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class CandidateResult:
    """One evaluated candidate as the search sees it."""

    candidate_id: str
    cycle: int
    baseline: str
    dataset: str
    mode: str
    index: int
    status: str
    failure_stage: str
    failure_reason: str
    accuracy: float
    baseline_accuracy: float
    diff_lines: int
    output_tokens: int
    output_lines: int
    generation_s: float
    evaluation_s: float
    novelty_jaccard: float = 0.0
    accepted: bool = False


@dataclass
class SearchResult:
    search_id: str
    run_id: str
    results: list[CandidateResult] = field(default_factory=list)
    skipped: int = 0


def candidate_id(search_id: str, cycle: int, baseline: str, mode: str, index: int) -> str:
    """Deterministic id: the same search position always names the same candidate."""
    digest = hashlib.sha1(f"{search_id}|{cycle}|{baseline}|{mode}|{index}".encode()).hexdigest()[:10]
    return f"c{cycle}-{mode}-{index}-{digest}"


def _seed(base: int, cycle: int, baseline: str) -> int:
    return (base * 1_000_003 + cycle * 7919 + int(hashlib.sha1(baseline.encode()).hexdigest()[:8], 16)) % 2**31


class Search:
    """One search run; `run()` is safe to call again with the same config to resume."""

    def __init__(self, config: SearchConfig, services: Services, tracker: Tracker,
                 on_result: Callable[[CandidateResult], None] | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.cfg = config
        self.svc = services
        self.tracker = tracker
        self.on_result = on_result
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0

    def run(self) -> SearchResult:
        cfg = self.cfg
        slots = self.svc.check()
        info = self.svc.generator.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30)
        params = {**{k: v for k, v in asdict(cfg).items() if k != "search_id"},
                  "model": info.model, "backend": info.backend, "evaluators": ",".join(slots)}
        tags = {"deltanas.model": info.model, "deltanas.adapter": cfg.adapter or "base",
                "deltanas.modes": ",".join(cfg.modes), "deltanas.datasets": ",".join(cfg.datasets)}
        run_id = self.tracker.start_search(cfg.search_id, params, tags)
        result = SearchResult(cfg.search_id, run_id)
        pool = EvaluatorPool(self.svc.evaluators, slots, deadline_s=cfg.eval_timeout_s + 120)
        self._total = cfg.cycles * len(cfg.datasets) * cfg.baselines * len(cfg.modes) * cfg.candidates
        log.info("search %s: %d candidates over %d evaluator slot(s); MLflow run %s", cfg.search_id, self._total,
                 pool.total_slots, run_id)
        status = "FAILED"
        try:
            for cycle in range(cfg.cycles):
                accepted = self._cycle(cycle, pool, result, info.model)
                if accepted:
                    reply = self.svc.curator.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=accepted),
                                                           timeout=60)
                    log.info("cycle %d: %d accepted candidate(s) added to the curator (%d duplicates)", cycle,
                             reply.added, reply.duplicates)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            pool.close()
            self.tracker.finish(run_id, status)
        return result

    def _baselines(self, dataset: str) -> list[common_pb2.Baseline]:
        reply = self.svc.curator.ListBaselines(curator_pb2.ListBaselinesRequest(
            dataset=dataset, epoch=1, limit=self.cfg.baselines, names=self.cfg.baseline_names), timeout=120)
        if not reply.baselines:
            raise ValueError(f"datasets: no LEMUR baseline for {dataset!r} matches baseline_names")
        return list(reply.baselines)

    def _cycle(self, cycle: int, pool: EvaluatorPool, result: SearchResult,
               model: str) -> list[curator_pb2.AcceptedCandidate]:
        cfg = self.cfg
        pending: list[tuple[Future, dict]] = []
        for dataset in cfg.datasets:
            for baseline in self._baselines(dataset):
                for mode in cfg.modes:
                    ids = [candidate_id(cfg.search_id, cycle, baseline.name, mode, i) for i in range(cfg.candidates)]
                    todo = {i for i, cid in enumerate(ids) if not self.tracker.is_logged(cid)}
                    result.skipped += cfg.candidates - len(todo)
                    self._advance(cfg.candidates - len(todo))
                    if todo:
                        pending += self._generate(cycle, baseline, mode, ids, todo, pool, model)
        accepted = []
        for future, ctx in pending:
            outcome = self._finish(cycle, future, ctx, result)
            if outcome is not None:
                accepted.append(outcome)
        return accepted

    def _generate(self, cycle: int, baseline: common_pb2.Baseline, mode: str, ids: list[str], todo: set[int],
                  pool: EvaluatorPool, model: str) -> list[tuple[Future, dict]]:
        cfg = self.cfg
        request = generator_pb2.GenerateRequest(
            request_id=f"{cfg.search_id}/{cycle}/{baseline.name}/{mode}", baseline=baseline, mode=MODES[mode],
            n=cfg.candidates, adapter=cfg.adapter, seed=_seed(cfg.seed, cycle, baseline.name),
            sampling=generator_pb2.SamplingParams(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                                  max_new_tokens=cfg.max_new_tokens))
        out = []
        for gen in self.svc.generator.Generate(request, timeout=3600 * 6):
            if gen.index not in todo:
                continue
            cid = ids[gen.index]
            log.info("candidate %s: generated %d tokens in %.1f s (%s, %s)", cid, gen.output_tokens, gen.latency_s,
                     baseline.name, mode)
            change = {"diff": gen.raw_text} if mode == "delta" else {"code": gen.raw_text}
            ev = evaluator_pb2.EvaluateRequest(
                request_id=f"{cfg.search_id}/{cid}", candidate_id=cid, baseline_code=baseline.code,
                dataset=baseline.dataset, hyperparameters=baseline.hyperparameters, batch=baseline.batch,
                transform=baseline.transform, epochs=cfg.epochs, train_limit=cfg.train_limit,
                test_limit=cfg.test_limit, timeout_s=cfg.eval_timeout_s, **change)
            ctx = {"cid": cid, "baseline": baseline, "mode": mode, "gen": gen, "model": model}
            out.append((pool.submit(ev), ctx))
        return out

    def _finish(self, cycle: int, future: Future, ctx: dict, result: SearchResult
                ) -> curator_pb2.AcceptedCandidate | None:
        cfg = self.cfg
        cid, baseline, mode, gen = ctx["cid"], ctx["baseline"], ctx["mode"], ctx["gen"]
        ev: evaluator_pb2.EvaluateResponse = future.result()
        valid = ev.status == evaluator_pb2.CANDIDATE_STATUS_VALID
        jaccard, nearest, novel = 0.0, "", False
        if valid:
            nov = self.svc.curator.CheckNovelty(curator_pb2.CheckNoveltyRequest(code=ev.patched_code), timeout=60)
            jaccard, nearest, novel = nov.max_jaccard, nov.nearest, nov.novel
        accepted = valid and novel and ev.accuracy >= cfg.accept_accuracy
        stage = evaluator_pb2.FailureStage.Name(ev.failure_stage).removeprefix("FAILURE_STAGE_")
        stage = "" if stage == "UNSPECIFIED" else stage.lower()
        res = CandidateResult(
            candidate_id=cid, cycle=cycle, baseline=baseline.name, dataset=baseline.dataset, mode=mode,
            index=gen.index, status="valid" if valid else "invalid", failure_stage=stage,
            failure_reason=ev.failure_reason, accuracy=ev.accuracy if valid else 0.0,
            baseline_accuracy=baseline.accuracy, diff_lines=ev.diff_lines, output_tokens=gen.output_tokens,
            output_lines=gen.output_lines, generation_s=gen.latency_s, evaluation_s=ev.duration_s,
            novelty_jaccard=jaccard, accepted=accepted)
        metrics = {"valid": float(valid), "accuracy": res.accuracy, "baseline_accuracy": baseline.accuracy,
                   "prompt_tokens": gen.prompt_tokens, "output_tokens": gen.output_tokens,
                   "output_lines": gen.output_lines, "diff_lines": ev.diff_lines, "generation_s": gen.latency_s,
                   "tokens_per_second": gen.tokens_per_second, "evaluation_s": ev.duration_s,
                   "novelty_jaccard": jaccard, "accepted": float(accepted),
                   **{f"eval_{k}": v for k, v in ev.metrics.items()}}
        params = {"baseline": baseline.name, "dataset": baseline.dataset, "mode": mode, "model": ctx["model"],
                  "adapter": cfg.adapter or "base", "cycle": cycle, "index": gen.index, "seed": gen.seed,
                  "batch": baseline.batch, "transform": baseline.transform, "worker": ev.worker,
                  **{f"hp_{k}": v for k, v in baseline.hyperparameters.items()}}
        tags = {"status": res.status, "failure_stage": stage or "none", "mode": mode, "dataset": baseline.dataset,
                "nearest_model": nearest}
        artifacts = {RAW_OUTPUT_FILE: gen.raw_text, DIFF_FILE: ev.applied_diff, CODE_FILE: ev.patched_code,
                     FAILURE_FILE: f"{stage}: {ev.failure_reason}\n\n{ev.logs}" if not valid else ""}
        with self._lock:
            self.tracker.log_candidate(result.run_id, cfg.search_id,
                                       CandidateRecord(cid, params, metrics, tags, artifacts))
            result.results.append(res)
        log.info("candidate %s: %s%s accuracy=%.4f diff_lines=%d", cid, res.status,
                 f" at {stage} ({ev.failure_reason[:120]})" if stage else "", res.accuracy, res.diff_lines)
        self._advance(1)
        if self.on_result:
            self.on_result(res)
        if not accepted:
            return None
        return curator_pb2.AcceptedCandidate(candidate_id=cid, baseline=baseline, code=ev.patched_code,
                                             accuracy=ev.accuracy)

    def _advance(self, n: int) -> None:
        if n and self.on_progress:
            with self._lock:
                self._done += n
                done = self._done
            self.on_progress(done, self._total)


def run_search(config: SearchConfig, services: Services, tracker: Tracker, **kwargs) -> SearchResult:
    return Search(config, services, tracker, **kwargs).run()


__all__ = ["CandidateResult", "Search", "SearchConfig", "SearchResult", "candidate_id", "run_search"]
