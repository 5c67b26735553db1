"""The search loop: cycles of baselines -> LLM candidates -> sandboxed evaluation -> novelty -> MLflow.

    from client.config import SearchConfig
    from client.search import run_search
    result = run_search(SearchConfig(datasets=["mnist"], candidates=3), services, tracker)

One cycle: (optionally) fine-tune a fresh adapter per mode on LEMUR pairs plus every accepted candidate, pick
`baselines` baselines per dataset (a different page of the curator's list each cycle), generate `candidates`
per baseline and mode, evaluate them concurrently, accept valid, good and novel ones into the curator's corpus;
then (optionally) repair failed candidates with the failure reason as feedback and re-train the cycle's top-k
for more epochs. Candidate ids are deterministic (search id, cycle, baseline, mode, index, attempt) and every
per-cycle decision is re-derived from the MLflow store, so a resumed search skips what its parent run already
holds and records every candidate exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from client.config import ADAPTER_TAG, DEFAULT_ADAPTER, REPAIRABLE, SearchConfig
from client.records import CandidateResult
from client.report import publish
from client.scheduler import EvaluatorPool
from client.sdk import Services
from client.tracking import Tracker, is_outage
from deltanas.adapters import PREFIX as SHIPPED_PREFIX
from deltanas.adapters import default_adapter
from deltanas.baseline import Baseline
from deltanas.prompts import render_messages
from deltanas.v1 import common_pb2, curator_pb2, evaluator_pb2, generator_pb2
from deltanas.vocabulary import (
    BASELINE_FILE,
    CODE_FILE,
    DIFF_FILE,
    FAILURE_FILE,
    MODE_VALUES,
    PROMPT_FILE,
    RAW_OUTPUT_FILE,
)

log = logging.getLogger("deltanas.search")


@dataclass
class SearchResult:
    search_id: str
    run_id: str
    results: list[CandidateResult] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True)
class SearchProgress:
    """Where the search stands: candidates asked of the LLM and not yet answered (with the tokens written so far,
    where the generator reports them), answered and being evaluated, done (logged, or skipped on resume: already
    recorded), valid among the done, of `total` planned."""

    total: int
    generating: int = 0
    evaluating: int = 0
    done: int = 0
    skipped: int = 0
    valid: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class _Slot:
    """Where a generated answer goes: its candidate id, index and attempt (0: first, n: n-th repair)."""

    cid: str
    index: int
    attempt: int = 0
    repaired_from: str = ""


def candidate_id(search_id: str, cycle: int, baseline: str, mode: str, index: int) -> str:
    """Deterministic id: the same search position always names the same candidate."""
    digest = hashlib.sha1(f"{search_id}|{cycle}|{baseline}|{mode}|{index}".encode()).hexdigest()[:10]
    return f"c{cycle}-{mode}-{index}-{digest}"


def repair_id(first: str, attempt: int) -> str:
    """Id of the `attempt`-th repair of the candidate whose first attempt is `first`."""
    return f"{first}-r{attempt}"


def _seed(base: int, cycle: int, baseline: str) -> int:
    return (base * 1_000_003 + cycle * 7919 + int(hashlib.sha1(baseline.encode()).hexdigest()[:8], 16)) % 2**31


class Search:
    """One search run; `run()` is safe to call again with the same config to resume. `on_result` gets each
    candidate once logged, `on_progress` each change of the counts (the tokens of answers being written too, which
    the generator reports every `progress_interval_s`)."""

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
        self._lock = threading.Lock()
        self._progress = SearchProgress(0)
        self._model = ""
        self._constrained = False  # delta answers decoded under the baseline's grammar (decoding, generator)
        self._initial: dict[str, str] = {}  # mode -> generator adapter before any fine-tune ("" = base model)
        self._result = SearchResult("", "")
        self._pending: list[tuple[Future, dict]] = []  # evaluations submitted, not yet logged

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
        self._initial = self._load_adapters(info)
        params = {**{k: v for k, v in asdict(cfg).items() if k != "search_id"},  # lists are logged comma-joined
                  "model": info.model, "backend": info.backend, "evaluator_slots": sum(slots.values()),
                  "constrained": self._constrained}  # evaluator addresses (ephemeral ports) stay in the log
        tags = {"deltanas.adapter": ",".join(f"{m}={a or 'base'}" for m, a in self._initial.items())}
        run_id = self.tracker.start_search(cfg.search_id, params, tags)
        result = self._result = SearchResult(cfg.search_id, run_id)
        pool = EvaluatorPool(self.svc.evaluators, slots, deadline_s=cfg.eval_timeout_s + 120)
        total = cfg.cycles * len(cfg.datasets) * cfg.baselines * len(cfg.modes) * cfg.candidates
        self._progress = SearchProgress(total)
        log.info("search %s: %d candidates over %d evaluator slot(s); MLflow run %s", cfg.search_id, total,
                 pool.total_slots, run_id)
        self.tracker.log_datasets(run_id, _lineage(cfg))
        status = "FAILED"
        try:
            with self.tracker.system_metrics(run_id):
                for cycle in range(cfg.cycles):
                    self._cycle(cycle, pool, result)
                    if cfg.retrain_top_k:
                        self._retrain(cycle, pool, run_id)
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

    # -- per-cycle state, re-derived the same way on every (re)start --------------------------------------------

    def _baselines(self, dataset: str, cycle: int) -> list[common_pb2.Baseline]:
        """`baselines` baselines of `dataset` for `cycle`: the cycle-th page of the curator's list, wrapping."""
        n = self.cfg.baselines

        def page(offset: int, limit: int) -> curator_pb2.ListBaselinesResponse:
            return self.svc.curator.ListBaselines(curator_pb2.ListBaselinesRequest(
                dataset=dataset, epoch=1, limit=limit, offset=offset, names=self.cfg.baseline_names), timeout=120)

        total = page(0, 1).total
        if not total:
            raise ValueError(f"datasets: no LEMUR baseline for {dataset!r} matches baseline_names")
        take = min(n, total)
        chosen = list(page((cycle * n) % total, take).baselines)
        if len(chosen) < take:
            chosen += page(0, take - len(chosen)).baselines
        return chosen

    def _adapters(self, cycle: int, run_id: str) -> dict[str, str]:
        """Generator adapter per mode for `cycle`: the configured one, or this cycle's fine-tuned one (trained
        once; its path is kept as a parent-run tag and only reloaded into the generator on resume)."""
        cfg = self.cfg
        if not cfg.finetune or cycle == 0:
            return dict(self._initial)
        tags = self.tracker.client.get_run(run_id).data.tags
        out = {}
        for mode in cfg.modes:
            name, tag = f"{cfg.search_id}-c{cycle}-{mode}", ADAPTER_TAG.format(cycle=cycle, mode=mode)
            path = tags.get(tag) or self._finetune(cycle, mode, run_id, name)
            self.svc.generator.LoadAdapter(generator_pb2.LoadAdapterRequest(name=name, path=path), timeout=600)
            self.tracker.client.set_tag(run_id, tag, path)
            log.info("cycle %d: generating %s candidates with adapter %s (%s)", cycle, mode, name, path)
            out[mode] = name
        return out

    def _load_adapters(self, info: generator_pb2.GetModelInfoResponse) -> dict[str, str]:
        """The adapter each mode generates with before any fine-tune, loading `adapter_dir` into the generator
        (see SearchConfig.adapter_dir); "" is the base model."""
        cfg = self.cfg
        if cfg.adapter or not cfg.adapter_dir:
            return dict.fromkeys(cfg.modes, cfg.adapter)
        if cfg.adapter_dir != DEFAULT_ADAPTER:
            paths = dict.fromkeys(cfg.modes, cfg.adapter_dir)
        elif info.backend == "local":
            paths = {m: a.ref for m in cfg.modes if (a := default_adapter(info.model, m))}
        else:
            paths = {}
            log.info("no default adapter on a %s backend: its server loads adapters itself", info.backend)
        out = dict.fromkeys(cfg.modes, "")
        loaded: dict[str, str] = {}  # path -> name: one load per adapter, however many modes use it
        for mode, path in paths.items():
            if path not in loaded:
                name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path.removeprefix(SHIPPED_PREFIX)).name)  # peft: no dots
                self.svc.generator.LoadAdapter(generator_pb2.LoadAdapterRequest(name=name, path=path), timeout=600)
                loaded[path] = name
            log.info("%s candidates are generated with adapter %s (%s)", mode, loaded[path], path)
            out[mode] = loaded[path]
        return out

    def _finetune(self, cycle: int, mode: str, run_id: str, name: str) -> str:
        """Builds the dataset (LEMUR pairs + accepted candidates) and fine-tunes on it; the adapter's path. The
        adapter becomes an MLflow logged model `name` of the parent run, its dataset the run's training input."""
        built = self.svc.curator.BuildDataset(curator_pb2.BuildDatasetRequest(
            datasets=self.cfg.datasets, mode=MODE_VALUES[mode], include_candidates=True), timeout=3600)
        log.info("cycle %d: %s dataset %s with %d train examples", cycle, mode, built.dataset_id,
                 built.train_examples)
        op = self.svc.curator.StartFineTune(curator_pb2.StartFineTuneRequest(
            dataset_id=built.dataset_id, max_steps=self.cfg.finetune_steps,
            gradient_accumulation=self.cfg.finetune_accumulation), timeout=60).operation
        for update in self.svc.curator.WatchFineTune(curator_pb2.WatchFineTuneRequest(id=op.id)):
            op = update.operation
            log.info("cycle %d: fine-tune %s (%s) step %d/%d loss %.4f, %.0f tokens/s", cycle, op.id, mode, op.step,
                     op.total_steps, op.loss, op.tokens_per_second)
        if op.state != curator_pb2.OPERATION_STATE_SUCCEEDED:
            state = curator_pb2.OperationState.Name(op.state).removeprefix("OPERATION_STATE_")
            raise RuntimeError(f"cycle {cycle}: fine-tune {op.id} ({mode}) ended {state}: {op.error}")
        source = {"curator_dataset": built.dataset_id, "path": built.path, "datasets": ",".join(self.cfg.datasets),
                  "accepted_candidates": "included"}
        self.tracker.log_adapter(
            run_id, name, cycle, op.adapter_path, metrics={f"{mode}/finetune_loss": op.loss},
            params={"base_model": op.model, "mode": mode, "cycle": cycle, "dataset_id": built.dataset_id,
                    "operation_id": op.id, "steps": op.step, "adapter_path": op.adapter_path},
            dataset={"name": f"{mode}-pairs", "digest": built.dataset_id, "source": json.dumps(source),
                     "profile": json.dumps({"train_examples": built.train_examples,
                                            "eval_examples": built.eval_examples})})
        return op.adapter_path

    def _cycle_results(self, run_id: str, cycle: int) -> list[CandidateResult]:
        """The candidates of `cycle` recorded so far, read back from the store."""
        return [r for r in map(CandidateResult.from_run, self.tracker.children(run_id)) if r.cycle == cycle]

    # -- one cycle ----------------------------------------------------------------------------------------------

    def _cycle(self, cycle: int, pool: EvaluatorPool, result: SearchResult) -> None:
        cfg = self.cfg
        units = [(b, mode) for dataset in cfg.datasets for b in self._baselines(dataset, cycle) for mode in cfg.modes]
        todo = {}
        for baseline, mode in units:
            ids = [candidate_id(cfg.search_id, cycle, baseline.name, mode, i) for i in range(cfg.candidates)]
            todo[baseline.name, mode] = [_Slot(cid, i) for i, cid in enumerate(ids) if not self.tracker.is_logged(cid)]
            self._skip(result, cfg.candidates - len(todo[baseline.name, mode]))
        adapters: dict[str, str] | None = None
        for baseline, mode in units:
            if slots := todo[baseline.name, mode]:
                adapters = adapters or self._adapters(cycle, result.run_id)
                self._generate(cycle, baseline, mode, adapters[mode], {s.index: s for s in slots}, pool,
                               n=cfg.candidates, seed=_seed(cfg.seed, cycle, baseline.name))
        self._log_evaluated(wait=True)
        baselines = {(b.name, mode): b for b, mode in units}
        for attempt in range(1, cfg.repair_rounds + 1):
            for done in sorted(self._cycle_results(result.run_id, cycle), key=lambda r: r.candidate_id):
                if done.attempt != attempt - 1 or done.failure_stage not in REPAIRABLE:
                    continue
                mode, index = done.mode, done.index
                first = candidate_id(cfg.search_id, cycle, done.baseline, mode, index)
                slot = _Slot(repair_id(first, attempt), index, attempt, done.candidate_id)
                self._advance(total=1)  # a repair is one more candidate
                if self.tracker.is_logged(slot.cid):
                    self._skip(result, 1)
                    continue
                adapters = adapters or self._adapters(cycle, result.run_id)
                baseline = baselines[done.baseline, mode]
                feedback = f"{done.failure_stage}: {done.failure_reason}"
                self._generate(cycle, baseline, mode, adapters[mode], {0: slot}, pool, n=1,
                               seed=_seed(cfg.seed, cycle, f"{baseline.name}|{mode}|{index}|r{attempt}"),
                               feedback=feedback)
            self._log_evaluated(wait=True)

    def _generate(self, cycle: int, baseline: common_pb2.Baseline, mode: str, adapter: str, slots: dict[int, _Slot],
                  pool: EvaluatorPool, n: int, seed: int, feedback: str = "") -> None:
        """Streams `n` answers for one baseline and mode; those with a slot go to the evaluators at once, and
        finished evaluations are logged while the LLM writes the next answers."""
        cfg = self.cfg
        request_id = f"{cfg.search_id}/{cycle}/{baseline.name}/{mode}"
        if feedback:
            request_id += f"/{slots[0].index}/r{slots[0].attempt}"
        request = generator_pb2.GenerateRequest(
            request_id=request_id, baseline=baseline, mode=MODE_VALUES[mode], n=n, adapter=adapter, seed=seed,
            feedback=feedback, constrained=self._constrained and mode == "delta",
            sampling=generator_pb2.SamplingParams(
                temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens),
            progress_interval_s=self.progress_interval_s)
        started_ms = int(time.time() * 1000)  # every candidate's run starts with its generation
        self._advance(generating=len(slots))
        writing: dict[int, int] = {}  # index -> tokens so far, of the answers still being written
        for gen in self.svc.generator.Generate(request, timeout=3600 * 6):
            slot = slots.get(gen.index)
            if slot is None:
                continue
            if gen.partial:
                self._advance(tokens=gen.output_tokens - writing.get(gen.index, 0))
                writing[gen.index] = gen.output_tokens
                continue
            self._advance(generating=-1, evaluating=1, tokens=-writing.pop(gen.index, 0))
            log.info("candidate %s: generated %d tokens in %.1f s (%s, %s%s)", slot.cid, gen.output_tokens,
                     gen.latency_s, baseline.name, mode, f", repair of {slot.repaired_from}" if feedback else "")
            change = {"delta_answer": gen.raw_text} if mode == "delta" else {"code": gen.raw_text}
            ev = evaluator_pb2.EvaluateRequest(
                request_id=f"{cfg.search_id}/{slot.cid}", candidate_id=slot.cid, baseline_code=baseline.code,
                epochs=cfg.epochs, timeout_s=cfg.eval_timeout_s, finish_reason=gen.finish_reason,
                **_training(baseline, cfg), **change)
            ctx = {"cycle": cycle, "slot": slot, "baseline": baseline, "mode": mode, "gen": gen, "adapter": adapter,
                   "started_ms": started_ms, "feedback": feedback}
            self._pending.append((pool.submit(ev), ctx))
            self._log_evaluated()

    def _log_evaluated(self, wait: bool = False) -> None:
        """Logs the submitted candidates whose evaluation is done, or (wait) all of them."""
        waiting = []
        for future, ctx in self._pending:
            if wait or future.done():
                self._finish(future, ctx)
            else:
                waiting.append((future, ctx))
        self._pending = waiting

    def _finish(self, future: Future, ctx: dict) -> None:
        cfg, result = self.cfg, self._result
        cycle, slot, baseline, mode, gen = ctx["cycle"], ctx["slot"], ctx["baseline"], ctx["mode"], ctx["gen"]
        cid = slot.cid
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
            index=slot.index, status="valid" if valid else "invalid", failure_stage=stage,
            failure_reason=ev.failure_reason, accuracy=ev.accuracy if valid else 0.0,
            baseline_accuracy=baseline.accuracy, diff_lines=ev.diff_lines, output_tokens=gen.output_tokens,
            output_lines=gen.output_lines, generation_s=gen.latency_s, evaluation_s=ev.duration_s,
            novelty_jaccard=jaccard, accepted=accepted, attempt=slot.attempt, repaired_from=slot.repaired_from,
            model=self._model, adapter=ctx["adapter"] or "base", seed=gen.seed, batch=baseline.batch,
            transform=baseline.transform, worker=ev.worker, hyperparameters=dict(baseline.hyperparameters),
            prompt_tokens=gen.prompt_tokens, tokens_per_second=gen.tokens_per_second, forced_tokens=gen.forced_tokens,
            finish_reason=gen.finish_reason, constrained=self._constrained and mode == "delta", nearest_model=nearest,
            eval_metrics=dict(ev.metrics))
        prompt = render_messages(mode, Baseline.from_proto(baseline), ctx["feedback"] or None)
        artifacts = {PROMPT_FILE: "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt),
                     BASELINE_FILE: baseline.code,
                     RAW_OUTPUT_FILE: gen.raw_text, DIFF_FILE: ev.applied_diff, CODE_FILE: ev.patched_code,
                     FAILURE_FILE: f"{stage}: {ev.failure_reason}\n\n{ev.logs}" if not valid else ""}
        if accepted:  # fed back before it is logged: every logged accepted candidate is in the curator's corpus
            reply = self.svc.curator.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=[
                curator_pb2.AcceptedCandidate(candidate_id=cid, baseline=baseline, code=ev.patched_code,
                                              accuracy=ev.accuracy)]), timeout=60)
            log.info("candidate %s: accepted into the curator's corpus (%d candidates)", cid, reply.total)
        with self._lock:
            self.tracker.log_candidate(result.run_id, cfg.search_id, res.to_record(artifacts, ctx["started_ms"]))
            result.results.append(res)
        log.info("candidate %s: %s%s accuracy=%.4f diff_lines=%d", cid, res.status,
                 f" at {stage} ({ev.failure_reason[:120]})" if stage else "", res.accuracy, res.diff_lines)
        self._advance(evaluating=-1, done=1, valid=int(valid))
        if self.on_result:
            self.on_result(res)

    def _retrain(self, cycle: int, pool: EvaluatorPool, run_id: str) -> None:
        """Re-trains the cycle's top-k valid candidates for `retrain_epochs` epochs (the patched code in full
        mode) and logs `accuracy_long` / `long_epochs` on their child runs; already re-trained ones are kept."""
        cfg = self.cfg
        valid = [r for r in self._cycle_results(run_id, cycle) if r.valid]
        pending = []
        for done in sorted(valid, key=lambda r: (-r.accuracy, r.candidate_id))[:cfg.retrain_top_k]:
            if done.accuracy_long is not None:
                continue
            cid = done.candidate_id
            baseline = common_pb2.Baseline(dataset=done.dataset, batch=done.batch, transform=done.transform,
                                           hyperparameters=done.hyperparameters)
            with tempfile.TemporaryDirectory() as tmp:
                code = Path(self.tracker.client.download_artifacts(done.run_id, CODE_FILE, tmp)).read_text()
            log.info("candidate %s: re-training for %d epochs", cid, cfg.retrain_epochs)
            pending.append((cid, pool.submit(evaluator_pb2.EvaluateRequest(
                request_id=f"{cfg.search_id}/{cid}/long{cfg.retrain_epochs}", candidate_id=cid, code=code,
                epochs=cfg.retrain_epochs, timeout_s=cfg.retrain_timeout_s, **_training(baseline, cfg)),
                deadline_s=cfg.retrain_timeout_s + 120)))
        for cid, future in pending:
            ev = future.result()
            if ev.status != evaluator_pb2.CANDIDATE_STATUS_VALID:
                log.warning("candidate %s: re-training failed (%s)", cid, ev.failure_reason[:200])
                continue
            self.tracker.update_candidate(cid, {"accuracy_long": ev.accuracy}, {"long_epochs": cfg.retrain_epochs})
            log.info("candidate %s: accuracy after %d epochs %.4f", cid, cfg.retrain_epochs, ev.accuracy)

    def _skip(self, result: SearchResult, n: int) -> None:
        result.skipped += n
        self._advance(done=n, skipped=n)

    def _advance(self, **changes: int) -> None:
        """Adds `changes` to the progress counters and reports the new state."""
        with self._lock:
            now = self._progress
            self._progress = replace(now, **{k: getattr(now, k) + v for k, v in changes.items()})
            progress = self._progress
        if self.on_progress:
            self.on_progress(progress)


def _lineage(cfg: SearchConfig) -> list[dict[str, str]]:
    """What the search trains on, per dataset, for MLflow's dataset lineage: the evaluator's split limits (0: the
    whole split) and the baselines; the digest names exactly that selection (the evaluator holds the data)."""
    out = []
    for dataset in cfg.datasets:
        source = {"dataset": dataset, "train_limit": cfg.train_limit, "test_limit": cfg.test_limit,
                  "baselines": ",".join(cfg.baseline_names) or f"{cfg.baselines} per cycle from the curator"}
        digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
        profile = {"train_images": cfg.train_limit or "all", "test_images": cfg.test_limit or "all"}
        out.append({"name": dataset, "digest": digest, "source": json.dumps(source), "profile": json.dumps(profile),
                    "context": "evaluation"})
    return out


def _training(baseline: common_pb2.Baseline, cfg: SearchConfig) -> dict[str, Any]:
    """The EvaluateRequest fields that say how a candidate of `baseline` trains."""
    return {"dataset": baseline.dataset, "hyperparameters": baseline.hyperparameters, "batch": baseline.batch,
            "transform": baseline.transform, "train_limit": cfg.train_limit, "test_limit": cfg.test_limit}


def run_search(config: SearchConfig, services: Services, tracker: Tracker, **kwargs) -> SearchResult:
    return Search(config, services, tracker, **kwargs).run()


__all__ = ["CandidateResult", "Search", "SearchProgress", "SearchResult", "candidate_id", "repair_id", "run_search"]
