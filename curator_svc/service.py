"""gRPC adapter of the curator: LEMUR baselines, training datasets, novelty, fine-tuning operations.

Built datasets and fine-tuning operations are logged to MLflow when a tracking URI is set (curator_svc.tracking).

    python -m curator_svc --port 50061 --state-dir /var/lib/deltanas/curator
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path

from curator_svc.candidates import CANDIDATES_FILE, CandidateStore, candidate_pairs
from curator_svc.config import CuratorConfig
from curator_svc.dataset import MANIFEST_FILE, EmptyDatasetError, build_datasets
from curator_svc.lemur import LemurIndex
from curator_svc.novelty import NoveltyIndex
from curator_svc.operations import TERMINAL, Cancelled, Operation, OperationStore
from curator_svc.pairing import pair_baselines
from curator_svc.tracking import flatten, open_tracker
from deltanas.baseline import Baseline, Budget
from deltanas.config import build, upgraded, with_overrides
from deltanas.errors import Cancelled as CallCancelled
from deltanas.errors import FailedPrecondition, InvalidArgument, NotFound, require
from deltanas.fields import require_baseline, require_code, require_finite, require_id, require_text
from deltanas.server import ServiceServer
from deltanas.v1 import curator_pb2, curator_pb2_grpc
from deltanas.vocabulary import MODE_NAMES, SERVICE_NAMES, operation_state_value

log = logging.getLogger(__name__)

SERVICE_NAME = SERVICE_NAMES["curator"]
DATASETS_DIR = "datasets"
DEFAULT_PAGE, MAX_PAGE = 100, 1000  # baselines per ListBaselines reply (code makes them large)
MAX_DATASETS, MAX_COUNT, MAX_TOKENS = 16, 1_000_000, 131_072  # bounds of BuildDataset and StartFineTune fields
MAX_MODEL_CHARS = 1024  # a model name, hub id or directory
# Calls served at once (deltanas.admission; max_queue more may wait): writes and builds one at a time.
CAPACITY = {"AddCandidates": 1, "BuildDataset": 1, "StartFineTune": 1, "CheckNovelty": 2, "WatchFineTune": 16}
_FINETUNE_FIELDS = ("max_steps", "learning_rate", "lora_r", "gradient_accumulation", "save_every")  # request = config


def operation_to_proto(op: Operation) -> curator_pb2.FineTuneOperation:
    return curator_pb2.FineTuneOperation(
        id=op.id, state=operation_state_value(op.state), dataset_id=op.dataset_id, model=op.model, step=op.step,
        total_steps=op.total_steps, loss=op.loss, learning_rate=op.learning_rate,
        tokens_per_second=op.tokens_per_second, adapter_path=op.adapter_path, error=op.error,
        resumed_from_step=op.resumed_from, restarts=op.restarts)


class CuratorServicer(curator_pb2_grpc.CuratorServiceServicer):
    def __init__(self, config: CuratorConfig) -> None:
        self.cfg = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.lemur = LemurIndex.load(config.lemur_root)
        self.candidates = CandidateStore(config.state_dir / CANDIDATES_FILE)
        self.operations = OperationStore(config.state_dir)
        self._tokenizers: dict[str, object] = {}
        self._novelty: NoveltyIndex | None = None
        self._novelty_lock = threading.Lock()
        self._closing = threading.Event()
        self._novelty_builder = threading.Thread(target=self._build_novelty, name="novelty-index", daemon=True)
        self._novelty_builder.start()
        self.operations.resume_interrupted(lambda op: self._finetune_job(op.dataset_id, op.params))

    def novelty(self) -> NoveltyIndex:
        """The MinHash-LSH index over LEMUR's models and accepted candidates (built once, in the background)."""
        with self._novelty_lock:
            if self._novelty is None:
                index = NoveltyIndex(self.cfg.novelty)
                for model in self.lemur.models():
                    if self._closing.is_set():
                        raise RuntimeError("curator is stopping: novelty index not built")
                    index.add(model, self.lemur.code(model))
                for cid, record in self.candidates.snapshot():
                    index.add(cid, record["code"])
                log.info("novelty index ready: %d models", len(index))
                self._novelty = index
            return self._novelty

    def _build_novelty(self) -> None:
        try:
            self.novelty()
        except RuntimeError:
            if not self._closing.is_set():
                raise

    def close(self) -> None:
        """Ends background work (the novelty build, running fine-tunes) before the process exits."""
        self._closing.set()
        self._novelty_builder.join()
        self.operations.shutdown()

    def probe(self) -> None:
        """Health: the LEMUR index must hold models."""
        if not self.lemur.models():
            raise RuntimeError(f"LEMUR index at {self.lemur.root} holds no usable model")

    def _dataset(self, field: str, name: str) -> None:
        known = self.lemur.datasets()
        require(name in known, field, f"unknown dataset {name!r}; known: {', '.join(known)}")

    def ListBaselines(self, request: curator_pb2.ListBaselinesRequest, context) -> curator_pb2.ListBaselinesResponse:
        self._dataset("dataset", request.dataset)
        require(len(request.names) <= MAX_PAGE, "names", f"more than {MAX_PAGE} names")
        for i, name in enumerate(request.names):
            require_text(f"names[{i}]", name)
        require(0 <= request.limit <= MAX_PAGE, "limit", f"must be in [0, {MAX_PAGE}] (0: {DEFAULT_PAGE})")
        require(request.offset >= 0, "offset", "must not be negative")
        require(request.epoch >= 0, "epoch", "must not be negative")
        baselines = self.lemur.baselines(request.dataset, request.epoch or 1)
        if request.names:
            by_name = {b.name: b for b in baselines}
            missing = [n for n in request.names if n not in by_name]
            if missing:
                raise NotFound(f"names: no {request.dataset} baseline at epoch {request.epoch or 1} for "
                               f"{', '.join(missing)}")
            baselines = [by_name[n] for n in request.names]
        else:
            baselines = sorted(baselines, key=lambda b: (b.accuracy, b.name))
        page = baselines[request.offset:request.offset + (request.limit or DEFAULT_PAGE)]
        return curator_pb2.ListBaselinesResponse(baselines=[b.to_proto() for b in page],
                                                 total=len(baselines))

    def CheckNovelty(self, request: curator_pb2.CheckNoveltyRequest, context) -> curator_pb2.CheckNoveltyResponse:
        require(bool(request.code.strip()), "code", "is empty")
        require_code("code", request.code, self.cfg.max_code_bytes)
        jaccard, nearest = self.novelty().query(request.code)
        return curator_pb2.CheckNoveltyResponse(max_jaccard=jaccard, nearest=str(nearest or ""),
                                                novel=jaccard < self.cfg.novelty.threshold,
                                                threshold=self.cfg.novelty.threshold)

    def AddCandidates(self, request: curator_pb2.AddCandidatesRequest, context) -> curator_pb2.AddCandidatesResponse:
        """Stores each new candidate and adds it to the novelty index; stops between records when the client left
        (what was stored stays: a retry is told those are duplicates)."""
        require(len(request.candidates) <= self.cfg.max_candidates_per_call, "candidates",
                f"more than {self.cfg.max_candidates_per_call} in one call ({len(request.candidates)}); split it")
        for i, c in enumerate(request.candidates):
            require(bool(c.candidate_id), f"candidates[{i}].candidate_id", "is empty")
            require_id(f"candidates[{i}].candidate_id", c.candidate_id)
            require(bool(c.code.strip()), f"candidates[{i}].code", "is empty")
            require_code(f"candidates[{i}].code", c.code, self.cfg.max_code_bytes)
            require(c.HasField("baseline") and bool(c.baseline.code), f"candidates[{i}].baseline", "is missing")
            require_baseline(f"candidates[{i}].baseline", c.baseline, self.cfg.max_code_bytes)
            require_finite(f"candidates[{i}].accuracy", c.accuracy, 0.0, 1.0)
            if c.HasField("budget"):
                Budget.from_proto(c.budget, f"candidates[{i}].budget")
                require_finite(f"candidates[{i}].gain", c.gain, -100.0, 100.0)
        index = self.novelty()  # built first: the build reads the stored candidates, so none is added twice
        added = 0
        for c in request.candidates:
            if not context.is_active():
                raise CallCancelled(f"candidates: the client left; {added} of {len(request.candidates)} stored")
            b = Baseline.from_proto(c.baseline)
            record = {"candidate_id": c.candidate_id, "code": c.code, "accuracy": c.accuracy,
                      "baseline": {**b.__dict__}}
            if c.HasField("budget"):  # a search's improved candidate: its gain was measured, so is its parent
                record |= {"gain": c.gain, "budget": asdict(Budget.from_proto(c.budget))}
            if self.candidates.add(record):
                if c.candidate_id not in index:
                    index.add(c.candidate_id, c.code)
                added += 1
        return curator_pb2.AddCandidatesResponse(added=added, duplicates=len(request.candidates) - added,
                                                 total=len(self.candidates.records))

    def _model(self, requested: str) -> str:
        """The request's base model, or the configured one; InvalidArgument unless it names a model source."""
        from deltanas.model_sources import ModelSourceError, source_for

        model = requested or self.cfg.model
        require_text("model", model, MAX_MODEL_CHARS)
        try:
            source_for(model)
        except ModelSourceError as exc:
            raise InvalidArgument("model", str(exc)) from exc
        return model

    def _tokenizer(self, model: str):
        from deltanas.model_sources import ModelSourceError, load_tokenizer

        if model not in self._tokenizers:
            try:
                self._tokenizers[model] = load_tokenizer(model)
            except (ModelSourceError, OSError, ValueError) as exc:  # a directory without a usable tokenizer
                raise FailedPrecondition(f"model: cannot load the tokenizer of {model!r}: {exc}") from exc
        return self._tokenizers[model]

    def BuildDataset(self, request: curator_pb2.BuildDatasetRequest, context) -> curator_pb2.BuildDatasetResponse:
        require(bool(request.datasets), "datasets", "name at least one dataset")
        require(len(request.datasets) <= MAX_DATASETS, "datasets", f"more than {MAX_DATASETS}")
        for i, name in enumerate(request.datasets):
            self._dataset(f"datasets[{i}]", name)
        require(request.mode in MODE_NAMES, "mode", "must be MODE_DELTA or MODE_FULL")
        require_finite("min_gain", request.min_gain, 0.0, 1.0)
        require(0 <= request.max_diff_lines <= MAX_COUNT, "max_diff_lines", f"must be in [0, {MAX_COUNT}]")
        require(0 <= request.max_pairs_per_dataset <= MAX_COUNT, "max_pairs_per_dataset",
                f"must be in [0, {MAX_COUNT}]")
        require(0 <= request.max_tokens <= MAX_TOKENS, "max_tokens", f"must be in [0, {MAX_TOKENS}]")
        model = self._model(request.model)
        cfg, mode = self.cfg, MODE_NAMES[request.mode]
        pairing = with_overrides(cfg.pairing, request, ("min_gain", "max_diff_lines", "max_pairs_per_dataset"))
        baselines = [b for name in request.datasets for b in self.lemur.baselines(name, 1)]
        pairs, report = pair_baselines(baselines, pairing)
        extra = candidate_pairs(self.candidates.records) if request.include_candidates else []
        tokenizer = self._tokenizer(model)
        dataset_cfg = with_overrides(cfg.dataset, request, ("max_tokens",))
        try:
            built = build_datasets(pairs, cfg.state_dir / DATASETS_DIR, tokenizer, dataset_cfg, extra, (mode,))[mode]
        except EmptyDatasetError as exc:
            pairing_counts = ", ".join(f"{k}={v}" for k, v in report.counts.items())
            raise FailedPrecondition(f"filters left an empty dataset: pairing {pairing_counts}; then {exc}; "
                                     "lower min_gain or raise max_diff_lines / max_tokens") from exc
        counts = {f"pairing.{k}": v for k, v in report.counts.items()}
        counts |= {f"dataset.{k}": v for k, v in built.counts.items()}
        log.info("dataset %s (%s): %d train, %d eval from %s", built.id, mode, built.train, built.eval,
                 ", ".join(request.datasets))
        params = {"datasets": ",".join(request.datasets), "mode": mode, "model": model,
                  "include_candidates": request.include_candidates,
                  **flatten({"pairing": asdict(pairing), "dataset": asdict(dataset_cfg)})}
        open_tracker(cfg).log_dataset(built.id, mode, built.path, params, counts)
        return curator_pb2.BuildDatasetResponse(
            dataset_id=built.id, path=str(built.path), train_examples=built.train, eval_examples=built.eval,
            counts=[curator_pb2.FilterCount(stage=k, count=v) for k, v in counts.items()])

    def _dataset_dir(self, dataset_id: str) -> Path:
        require(bool(dataset_id), "dataset_id", "is empty")
        require(dataset_id.isalnum() and len(dataset_id) <= 64, "dataset_id",
                f"{dataset_id[:80]!r} is not a dataset id")
        path = self.cfg.state_dir / DATASETS_DIR / dataset_id
        if not (path / MANIFEST_FILE).exists():
            raise NotFound(f"dataset_id: no dataset {dataset_id!r}; build one with BuildDataset")
        return path

    def StartFineTune(self, request: curator_pb2.StartFineTuneRequest, context) -> curator_pb2.StartFineTuneResponse:
        from curator_svc.finetune import FineTuneConfig

        require(0 <= request.max_steps <= self.cfg.max_finetune_steps, "max_steps",
                f"must be in [0, {self.cfg.max_finetune_steps}] (0: one epoch), got {request.max_steps}")
        require_finite("learning_rate", request.learning_rate, 0.0, 1.0)
        for name, most in (("lora_r", 1024), ("gradient_accumulation", 1024), ("save_every", MAX_COUNT)):
            require(0 <= getattr(request, name) <= most, name, f"must be in [0, {most}], got {getattr(request, name)}")
        require_text("resume_operation_id", request.resume_operation_id, 64)
        self._dataset_dir(request.dataset_id)
        model = self._model(request.model)
        work_dir = None
        if request.resume_operation_id:
            previous = self.operations.get(request.resume_operation_id, field="resume_operation_id")
            if previous.state not in TERMINAL:
                raise FailedPrecondition(f"resume_operation_id: operation {previous.id} is still {previous.state}")
            if previous.model != model:
                raise FailedPrecondition(
                    f"model: the checkpoints of {previous.id} were trained from base model {previous.model!r}, "
                    f"not {model!r}; resume with model={previous.model!r} or start a new operation")
            if previous.dataset_id != request.dataset_id:
                raise FailedPrecondition(
                    f"dataset_id: {previous.id} trained on dataset {previous.dataset_id!r}; resume with that "
                    "dataset or start a new operation")
            work_dir = Path(previous.work_dir)
        config = with_overrides(FineTuneConfig(base_model=model, device=self.cfg.device), request, _FINETUNE_FIELDS)
        params = {"config": asdict(config), "resume_operation_id": request.resume_operation_id}
        op = self.operations.start(request.dataset_id, model, self._finetune_job(request.dataset_id, params),
                                   work_dir, params)
        log.info("operation %s: fine-tuning %s on dataset %s", op.id, model, request.dataset_id)
        return curator_pb2.StartFineTuneResponse(operation=operation_to_proto(op))

    def _finetune_job(self, dataset_id: str, params: dict):
        """The job of a fine-tuning operation, from what its Operation records (so a restart can rebuild it)."""
        from curator_svc.finetune import FineTuneConfig, finetune, latest_checkpoint_step

        dataset_dir = self._dataset_dir(dataset_id)
        config = build(FineTuneConfig, upgraded(FineTuneConfig, params["config"]), f"operation of {dataset_id}")
        tracker = open_tracker(self.cfg)

        def job(op: Operation, report, cancel: threading.Event) -> str:
            work_dir = Path(op.work_dir)
            if step := latest_checkpoint_step(work_dir):
                self.operations.mark_resumed(op.id, step)
            run_params = {**asdict(config), "resume_operation_id": params.get("resume_operation_id", "")}
            with tracker.finetune_run(op.id, dataset_id, config.base_model, run_params) as run:
                result = finetune(config, dataset_dir, work_dir, progress=run.progress(report), cancel=cancel,
                                  label=op.id)
                if result.cancelled or not result.adapter_dir:
                    raise Cancelled()
                run.adapter_dir = result.adapter_dir
            return result.adapter_dir

        return job

    def GetFineTune(self, request: curator_pb2.GetFineTuneRequest, context) -> curator_pb2.GetFineTuneResponse:
        require(bool(request.id), "id", "is empty")
        return curator_pb2.GetFineTuneResponse(operation=operation_to_proto(self.operations.get(request.id)))

    def WatchFineTune(self, request: curator_pb2.WatchFineTuneRequest, context):
        require(bool(request.id), "id", "is empty")
        self.operations.get(request.id)
        for op in self.operations.watch(request.id, context.is_active):
            yield curator_pb2.WatchFineTuneResponse(operation=operation_to_proto(op))

    def CancelFineTune(self, request: curator_pb2.CancelFineTuneRequest, context
                       ) -> curator_pb2.CancelFineTuneResponse:
        require(bool(request.id), "id", "is empty")
        return curator_pb2.CancelFineTuneResponse(operation=operation_to_proto(self.operations.cancel(request.id)))


def build_server(config: CuratorConfig) -> ServiceServer:
    servicer = CuratorServicer(config)
    server = ServiceServer("curator", config, probe=servicer.probe, capacity=CAPACITY)
    server.on_stop(servicer.close)
    server.add(curator_pb2_grpc.add_CuratorServiceServicer_to_server, servicer, SERVICE_NAME)
    return server
