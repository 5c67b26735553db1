"""The search loop: each cycle draws parents (client.search.selection), asks the LLM for candidates of each,
drops programs already evaluated on that parent (re-sampling them), evaluates the rest in the sandbox, judges
each against its parent's same-budget reference, logs it to MLflow, and measures every improved candidate's own
reference so that it can become a parent.

    Search(cfg, services, tracker, on_result=print).run()     # safe to call again with the same config: resumes

Candidate ids are deterministic (search id, cycle, parent, mode, index, attempt), references are cached in the
tracking store and the archive is rebuilt from the store after every cycle, so a resumed search draws the same
parents, skips what its parent run already holds and records every candidate exactly once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, replace

import deltadiff
from client.channels import Services
from client.config import REPAIRABLE, SearchConfig
from client.records import CandidateResult, SearchProgress, SearchResult
from client.report import publish
from client.search.adapters import Adapters
from client.search.archive import Archive
from client.search.candidates import Position, Submitted, Unit, program_key, record_of
from client.search.confirm import confirm_improved
from client.search.ids import candidate_id, derive_seed, repair_id
from client.search.outcomes import NoiseRule, Outcome, judge
from client.search.references import Reference, References
from client.search.retrain import retrain_top
from client.search.roots import LemurRoots
from client.search.selection import make_selection
from client.tracking import Tracker, is_outage
from deltanas.baseline import Baseline
from deltanas.evaluator_pool import EvaluatorPool
from deltanas.prompts import render_messages
from deltanas.v1 import curator_pb2, evaluator_pb2, generator_pb2
from deltanas.vocabulary import (
    BASELINE_FILE,
    CODE_FILE,
    DIFF_FILE,
    FAILURE_FILE,
    MODE_VALUES,
    PROMPT_FILE,
    RAW_OUTPUT_FILE,
    SKIPPED_TAG,
)

log = logging.getLogger("deltanas.search")

class Search:
    """One search run. `on_result` gets each candidate once logged, `on_progress` each change of the counts (the
    tokens of answers being written too, which the generator reports every `progress_interval_s`)."""

    def __init__(self, config: SearchConfig, services: Services, tracker: Tracker,
                 on_result: Callable[[CandidateResult], None] | None = None,
                 on_progress: Callable[[SearchProgress], None] | None = None,
                 progress_interval_s: float = 2.0) -> None:
        self.cfg = config
        self.svc = services
        self.tracker = tracker
        self.on_result = on_result
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s if on_progress else 0.0
        self.rule = NoiseRule(config.improve_spread, config.improve_min_points)
        self.policy = make_selection(config.selection, config)
        self.archive = Archive()
        self.adapters = Adapters(config, services, tracker)
        self._lock = threading.Lock()
        self._progress = SearchProgress(0)
        self._model = ""
        self._constrained = False  # delta answers decoded under the baseline's grammar (decoding, generator)
        self._result = SearchResult("", "")
        self._pending: list[tuple[Future, Submitted]] = []  # evaluations submitted, not yet logged
        self._evaluated: dict[str, evaluator_pb2.EvaluateResponse] = {}  # this process's valid ones, by candidate id
        self._writing: dict[str, int] = {}  # candidate id -> tokens so far, of the answers still being written

    def run(self) -> SearchResult:
        cfg = self.cfg
        slots = self.svc.check()
        if cfg.retrain_top_k:
            self._check_epochs()
        info = self.svc.generator.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30)
        self._model = info.model
        if cfg.decoding == "constrained" and not info.constrained_decoding:
            raise ValueError(f"decoding: the generator's {info.backend} backend cannot decode under a grammar; "
                             "use auto or free")
        self._constrained = cfg.decoding == "constrained" or (cfg.decoding == "auto" and info.constrained_decoding)
        initial = self.adapters.start(info)
        params = {**{k: v for k, v in asdict(cfg).items() if k != "search_id"},  # lists are logged comma-joined
                  "model": info.model, "backend": info.backend, "evaluator_slots": sum(slots.values()),
                  "constrained": self._constrained}  # evaluator addresses (ephemeral ports) stay in the log
        tags = {"deltanas.adapter": ",".join(f"{m}={a or 'base'}" for m, a in initial.items())}
        run_id = self.tracker.start_search(cfg.search_id, params, tags)
        result = self._result = SearchResult(cfg.search_id, run_id)
        pool = EvaluatorPool(self.svc.evaluators, slots, deadline_s=cfg.eval_timeout_s + 120)
        self.references = References(self.tracker, pool, cfg.reference_seeds, cfg.eval_timeout_s)
        self.roots = LemurRoots(cfg, self.svc.curator, self.references, self.archive, self._skipped)
        total = cfg.cycles * len(cfg.datasets) * cfg.baselines * len(cfg.modes) * cfg.candidates
        self._progress = SearchProgress(total)
        log.info("search %s: %d candidates over %d evaluator slot(s), %s selection; MLflow run %s", cfg.search_id,
                 total, pool.total_slots, cfg.selection, run_id)
        self.tracker.log_datasets(run_id, cfg.lineage())
        status = "FAILED"
        try:
            with self.tracker.system_metrics(run_id):
                for cycle in range(cfg.cycles):
                    self._cycle(cycle, pool)
                    if cfg.retrain_top_k:
                        self._retrain(cycle, pool)
                    self._publish(final=cycle == cfg.cycles - 1)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            pool.close()
            self.tracker.finish(run_id, status)
        return result

    def _publish(self, final: bool) -> None:
        """The parent run's dashboard (client.report.publish): per-cycle metrics now, the whole report at the end.
        A store that is down only delays it (the metrics are journaled; `deltanas report` redraws the rest)."""
        try:
            publish(self.tracker, self._result.run_id, self.cfg.search_id, final=final)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("search %s: the dashboard was not updated, MLflow is unreachable (%s)", self.cfg.search_id,
                        type(exc).__name__)

    def _check_epochs(self) -> None:
        for address, stub in self.svc.evaluators.items():
            cap = stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=10)
            if cap.max_epochs and cap.max_epochs < self.cfg.retrain_epochs:
                raise ValueError(f"retrain_epochs: {self.cfg.retrain_epochs} exceeds the {cap.max_epochs} epochs "
                                 f"evaluator {address} allows")

    def _skipped(self, baseline: Baseline, reference: Reference) -> None:
        """A baseline that does not learn under the budget: said on the parent run (tag) and in the result."""
        entry = f"{baseline.name}: {reference.failure[:200]}"
        if entry not in self._result.skipped_baselines:
            self._result.skipped_baselines.append(entry)
            self.tracker.set_tags(self._result.run_id, {SKIPPED_TAG: json.dumps(self._result.skipped_baselines)})

    # -- one cycle ----------------------------------------------------------------------------------------------

    def _units(self, cycle: int) -> list[Unit]:
        """This cycle's parents (per the selection policy) and modes, each with its number of candidates."""
        cfg, units = self.cfg, []
        for dataset in cfg.datasets:
            drawn = self.policy.parents(cycle, dataset, cfg.baselines, self.archive, self.roots)
            if len(drawn) < cfg.baselines:
                missing = (cfg.baselines - len(drawn)) * len(cfg.modes) * cfg.candidates
                log.warning("cycle %d: only %d program(s) of %s learn under this budget; %d candidate(s) fewer",
                            cycle, len(drawn), dataset, missing)
                self._advance(total=-missing)
            counts = Counter(p.id for p in drawn)
            by_id = {p.id: p for p in drawn}
            for pid, count in counts.items():
                parent = by_id[pid]
                log.info("cycle %d: parent %s (%s, generation %d, reference %s)", cycle, pid, dataset,
                         parent.generation, parent.reference.describe())
                units += [Unit(parent, mode, count * cfg.candidates) for mode in cfg.modes]
        return units

    def _cycle(self, cycle: int, pool: EvaluatorPool) -> None:
        cfg = self.cfg
        units = self._units(cycle)
        adapters: dict[str, str] | None = None
        for unit in units:
            ids = [candidate_id(cfg.search_id, cycle, unit.parent.id, unit.mode, i) for i in range(unit.count)]
            positions = {i: Position(cid, i) for i, cid in enumerate(ids) if not self.tracker.is_logged(cid)}
            self._skip(unit.count - len(positions))
            if positions:
                adapters = adapters or self.adapters.for_cycle(cycle, self._result.run_id)
                self._generate(cycle, unit, adapters[unit.mode], positions, pool,
                               seed=derive_seed(cfg.seed, cycle, unit.parent.id))
        self._log_evaluated(wait=True)
        self._repair(cycle, units, pool, adapters)
        self._close_cycle(cycle)

    def _repair(self, cycle: int, units: list[Unit], pool: EvaluatorPool, adapters: dict[str, str] | None) -> None:
        """Repair rounds: a candidate that failed a repairable stage is asked for again with the failure reason."""
        cfg = self.cfg
        by_parent = {(u.parent.id, u.mode): u for u in units}
        for attempt in range(1, cfg.repair_rounds + 1):
            for done in sorted(self._cycle_results(cycle), key=lambda r: r.candidate_id):
                if done.attempt != attempt - 1 or done.failure_stage not in REPAIRABLE:
                    continue
                unit = by_parent[done.baseline, done.mode]
                first = candidate_id(cfg.search_id, cycle, done.baseline, done.mode, done.index)
                position = Position(repair_id(first, attempt), done.index, attempt, done.candidate_id)
                self._advance(total=1)  # a repair is one more candidate
                if self.tracker.is_logged(position.cid):
                    self._skip(1)
                    continue
                adapters = adapters or self.adapters.for_cycle(cycle, self._result.run_id)
                seed = derive_seed(cfg.seed, cycle, unit.parent.id, unit.mode, done.index, f"r{attempt}")
                self._generate(cycle, unit, adapters[unit.mode], {0: position}, pool, seed=seed,
                               feedback=f"{done.failure_stage}: {done.failure_reason}")
            self._log_evaluated(wait=True)

    def _generate(self, cycle: int, unit: Unit, adapter: str, positions: dict[int, Position], pool: EvaluatorPool,
                  seed: int, feedback: str = "") -> None:
        """Streams answers for the positions; each new program goes to the evaluators at once, one already evaluated on
        this parent is asked for again (at most resample_limit times), and finished evaluations are logged while
        the LLM writes the next answers."""
        cfg, parent = self.cfg, unit.parent
        tried = self.archive.tried(parent.id, cfg.history)
        budget = parent.reference.budget()
        request = generator_pb2.GenerateRequest(
            baseline=parent.baseline.to_proto(), mode=MODE_VALUES[unit.mode], adapter=adapter, feedback=feedback,
            constrained=self._constrained and unit.mode == "delta", progress_interval_s=self.progress_interval_s,
            sampling=generator_pb2.SamplingParams(
                temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens),
            budget=budget.to_proto(),
            tried=[generator_pb2.TriedChange(change=t.change[:400], outcome=t.outcome[:200]) for t in tried])
        messages = render_messages(unit.mode, parent.baseline, feedback or None, budget=budget, tried=tried)
        prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        seen = {**self.archive.seen(parent), **unit.dispatched}
        started_ms = int(time.time() * 1000)  # every candidate's run starts with its generation
        self._advance(generating=len(positions))
        base_id = f"{cfg.search_id}/{cycle}/{parent.id}/{unit.mode}"
        if feedback:
            base_id += f"/{next(iter(positions.values())).index}/r{next(iter(positions.values())).attempt}"
        # Round 0 asks for the candidates by index (candidate i with seed + i, as on every start); a re-sample
        # round asks only for the positions whose answer was a duplicate, with a seed of its own and a hotter
        # temperature (resample_heat per round).
        request.request_id, request.n, request.seed = base_id, max(positions) + 1, seed
        todo, rounds = positions, 0
        while todo:
            again: dict[int, Position] = {}
            for gen in self.svc.generator.Generate(request, timeout=3600 * 6):
                position = todo.get(gen.index)
                if position is None:
                    continue
                if gen.partial:
                    self._advance(tokens=gen.output_tokens - self._writing.get(position.cid, 0))
                    self._writing[position.cid] = gen.output_tokens
                    continue
                self._advance(tokens=-self._writing.pop(position.cid, 0))
                key = program_key(gen, unit.mode, parent.baseline.code)
                if key and key in seen and position.resamples < cfg.resample_limit:
                    position.resamples += 1
                    log.info("candidate %s: the same program as %s; asking again (%d/%d) at temperature %.2f",
                             position.cid, seen[key], position.resamples, cfg.resample_limit,
                             cfg.resample_temperature(position.resamples))
                    again[len(again)] = position
                    continue
                self._advance(generating=-1, evaluating=1)
                log.info("candidate %s: generated %d tokens in %.1f s (%s, %s%s)", position.cid, gen.output_tokens,
                         gen.latency_s, parent.id, unit.mode,
                         f", repair of {position.repaired_from}" if feedback else "")
                sub = Submitted(cycle, position, parent, unit.mode, gen, adapter, started_ms, prompt, key)
                if key and key in seen:
                    self._finish_duplicate(sub, seen[key])
                    continue
                if key:
                    seen[key] = unit.dispatched[key] = position.cid
                self._submit(sub, pool)
            todo, rounds = again, rounds + 1
            request.request_id, request.n = f"{base_id}/resample{rounds}", len(todo)
            request.seed = derive_seed(seed, "resample", rounds)
            request.sampling.temperature = cfg.resample_temperature(rounds)

    def _submit(self, sub: Submitted, pool: EvaluatorPool) -> None:
        """Sends a candidate to the evaluators (seed 0, its parent's settings) and logs what has finished since."""
        cfg, parent = self.cfg, sub.parent
        answer = {"delta_answer": sub.gen.raw_text, "baseline_code": parent.baseline.code} \
            if sub.mode == "delta" else {"code": sub.gen.raw_text}
        request = cfg.settings(parent.baseline).request(
            f"{cfg.search_id}/{sub.position.cid}", sub.position.cid, seed=0, timeout_s=cfg.eval_timeout_s,
            finish_reason=sub.gen.finish_reason, **answer)
        self._pending.append((pool.submit(request), sub))
        self._log_evaluated()

    def _log_evaluated(self, wait: bool = False) -> None:
        """Logs the submitted candidates whose evaluation is done, or (wait) all of them."""
        waiting = []
        for future, sub in self._pending:
            if wait or future.done():
                self._finish(future.result(), sub)
            else:
                waiting.append((future, sub))
        self._pending = waiting

    def _finish(self, ev: evaluator_pb2.EvaluateResponse, sub: Submitted) -> None:
        """Judges an evaluated candidate against its parent's reference, feeds an improved novel one back to the
        curator and logs it."""
        cfg, parent = self.cfg, sub.parent
        valid = ev.status == evaluator_pb2.CANDIDATE_STATUS_VALID
        verdict = judge(valid, ev.accuracy, ev.predictions_digest, parent.reference, self.rule)
        jaccard, nearest, novel = 0.0, "", False
        if valid:
            nov = self.svc.curator.CheckNovelty(curator_pb2.CheckNoveltyRequest(code=ev.patched_code), timeout=60)
            jaccard, nearest, novel = nov.max_jaccard, nov.nearest, nov.novel
        accepted = verdict.outcome == Outcome.IMPROVED and novel and ev.accuracy >= cfg.accept_accuracy
        stage = evaluator_pb2.FailureStage.Name(ev.failure_stage).removeprefix("FAILURE_STAGE_")
        stage = "" if stage == "UNSPECIFIED" else stage.lower()
        diff = ev.applied_diff or (deltadiff.make_diff(parent.baseline.code, ev.patched_code) if ev.patched_code
                                   else "")
        res = replace(self._record_of(sub), status="valid" if valid else "invalid", failure_stage=stage,
                      failure_reason=ev.failure_reason, accuracy=ev.accuracy if valid else 0.0,
                      diff_lines=ev.diff_lines, evaluation_s=ev.duration_s, novelty_jaccard=jaccard, accepted=accepted,
                      worker=ev.worker, nearest_model=nearest, eval_metrics=dict(ev.metrics),
                      outcome=verdict.outcome.value, gain=verdict.gain, threshold=verdict.threshold,
                      change=deltadiff.change_summary(diff) if diff else "",
                      code_key=deltadiff.code_fingerprint(ev.patched_code) if ev.patched_code else sub.code_key,
                      predictions_digest=ev.predictions_digest)
        if accepted:  # fed back before it is logged: every logged accepted candidate is in the curator's corpus
            reply = self.svc.curator.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=[
                curator_pb2.AcceptedCandidate(candidate_id=res.candidate_id, baseline=parent.baseline.to_proto(),
                                              code=ev.patched_code, accuracy=ev.accuracy, gain=verdict.gain,
                                              budget=parent.reference.budget().to_proto())]),
                timeout=60)
            log.info("candidate %s: accepted into the curator's corpus (%d candidates)", res.candidate_id,
                     reply.total)
        if valid:
            self._evaluated[res.candidate_id] = ev
        artifacts = {PROMPT_FILE: sub.prompt, BASELINE_FILE: parent.baseline.code, RAW_OUTPUT_FILE: sub.gen.raw_text,
                     DIFF_FILE: ev.applied_diff, CODE_FILE: ev.patched_code,
                     FAILURE_FILE: f"{stage}: {ev.failure_reason}\n\n{ev.logs}" if not valid else ""}
        self._log(res, artifacts, sub.started_ms)
        log.info("candidate %s: %s%s", res.candidate_id, res.outcome,
                 f" at {stage} ({ev.failure_reason[:120]})" if stage else
                 f", accuracy {res.accuracy:.4f}, gain {res.gain:+.2f} points (threshold {res.threshold:.2f})")

    def _finish_duplicate(self, sub: Submitted, same_as: str) -> None:
        """A candidate whose answers were all programs already evaluated on its parent: logged, not evaluated."""
        reason = f"the same program as {same_as}, after {sub.position.resamples} re-sample(s)"
        res = replace(self._record_of(sub), status="duplicate", outcome=Outcome.DUPLICATE.value, code_key=sub.code_key,
                      failure_reason=reason)
        self._log(res, {PROMPT_FILE: sub.prompt, BASELINE_FILE: sub.parent.baseline.code,
                        RAW_OUTPUT_FILE: sub.gen.raw_text}, sub.started_ms)
        log.info("candidate %s: not evaluated, %s", res.candidate_id, reason)

    def _record_of(self, sub: Submitted) -> CandidateResult:
        """The candidate's record before its evaluation (with its root's LEMUR record as context)."""
        root = self.archive.programs.get(sub.parent.root, sub.parent).baseline
        return record_of(sub, self._model, self._constrained, root.accuracy)

    def _log(self, res: CandidateResult, artifacts: dict[str, str], started_ms: int) -> None:
        with self._lock:
            self.tracker.log_candidate(self._result.run_id, self.cfg.search_id, res.to_record(artifacts, started_ms))
            self._result.results.append(res)
        self._advance(evaluating=-1, done=1, valid=int(res.valid), improved=int(res.improved))
        if res.valid and res.gain is not None:
            with self._lock:
                best = self._progress.best_gain
                self._progress = replace(self._progress, best_gain=res.gain if best is None else max(best, res.gain))
        if self.on_result:
            self.on_result(res)

    def _cycle_results(self, cycle: int) -> list[CandidateResult]:
        """The candidates of `cycle` recorded so far, read back from the store."""
        return [r for r in map(CandidateResult.from_run, self.tracker.children(self._result.run_id))
                if r.cycle == cycle]

    def _close_cycle(self, cycle: int) -> None:
        """Records the cycle's candidates in the archive (as the store holds them) and confirms the improved ones
        (client.search.confirm): one still improved on its own reference's mean becomes a parent."""
        results = self._cycle_results(cycle)
        for r in results:
            self.archive.record(r)
        confirmed = confirm_improved(cycle, results, self.archive, self.references, self.tracker, self.cfg,
                                     self._evaluated)
        for cid, gain in confirmed.items():
            self._update_result(cid, gain)

    def _update_result(self, cid: str, confirmed_gain: float) -> None:
        with self._lock:
            self._result.results = [replace(r, confirmed_gain=confirmed_gain) if r.candidate_id == cid else r
                                    for r in self._result.results]

    def _retrain(self, cycle: int, pool: EvaluatorPool) -> None:
        retrain_top(self.cfg, self._cycle_results(cycle), pool, self.tracker)

    def _skip(self, n: int) -> None:
        self._result.skipped += n
        self._advance(done=n, skipped=n)

    def _advance(self, **changes: int) -> None:
        """Adds `changes` to the progress counters and reports the new state."""
        with self._lock:
            now = self._progress
            self._progress = replace(now, **{k: getattr(now, k) + v for k, v in changes.items()})
            progress = self._progress
        if self.on_progress:
            self.on_progress(progress)
