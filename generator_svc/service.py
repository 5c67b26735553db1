"""gRPC adapter of the generator: validates, renders the prompt template, streams candidates.

python -m generator_svc --model smollm2-135m --port 50062

Every field is bounded before any tokenizing or grammar building. Admission (deltanas.admission): one Generate
decodes at a time (the local model's lock) and `max_queue` more may wait; beyond, RESOURCE_EXHAUSTED. A call whose
client leaves (cancel, deadline) stops decoding at the next token.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import deltadiff
from deltadiff.grammar import FENCE_CLOSE, diff_grammar
from deltanas.adapters import AdapterError, resolve_adapter
from deltanas.baseline import Baseline, Budget
from deltanas.config import request_fields
from deltanas.errors import InvalidArgument, NotFound, Unavailable, require
from deltanas.fields import (
    INT64_MAX,
    MAX_NAME_CHARS,
    MAX_REQUEST_ID_CHARS,
    require_baseline,
    require_code,
    require_finite,
    require_text,
)
from deltanas.prompts import Tried, render_messages
from deltanas.server import ServiceServer
from deltanas.v1 import generator_pb2, generator_pb2_grpc
from deltanas.vocabulary import (
    FINISH_LENGTH,
    MAX_TEMPERATURE,
    MODE_NAMES,
    MODE_VALUES,
    SERVICE_NAMES,
    finish_reason_name,
)
from generator_svc.backends import create_backend
from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Constraint,
    Generation,
    GrammarRefused,
    Messages,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
)
from generator_svc.config import GeneratorConfig

log = logging.getLogger(__name__)

SERVICE_NAME = SERVICE_NAMES["generator"]
MIN_TEMPERATURE = 1e-3  # below, logits / temperature overflow float32: every token gets probability NaN


@contextmanager
def backend_errors() -> Iterator[None]:
    """Backend errors as gRPC status: unknown adapter NOT_FOUND, prompt too long INVALID_ARGUMENT, down UNAVAILABLE
    (so that a client retries on another generator)."""
    try:
        yield
    except UnknownAdapter as exc:
        raise NotFound(f"adapter: {exc}") from exc
    except PromptTooLong as exc:
        raise InvalidArgument("baseline.code", str(exc)) from exc
    except GrammarRefused as exc:
        raise InvalidArgument("constrained", str(exc)) from exc
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from exc


MAX_TRIED = 16
MAX_CHANGE_CHARS, MAX_OUTCOME_CHARS = 400, 200


def _parses(mode: str, baseline_code: str, gen: Generation) -> bool:
    """Whether the file an answer makes parses; an answer that makes no file passes (the evaluator says why)."""
    try:
        code = deltadiff.answer_program(gen.text, baseline_code, delta=mode == "delta",
                                        cut=gen.finish_reason == FINISH_LENGTH)
    except deltadiff.DiffError:
        return True
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _tried(request: generator_pb2.GenerateRequest) -> list[Tried]:
    require(len(request.tried) <= MAX_TRIED, "tried", f"at most {MAX_TRIED} entries, got {len(request.tried)}")
    for t in request.tried:
        require(0 < len(t.change) <= MAX_CHANGE_CHARS and t.change.isprintable(), "tried.change",
                f"must be 1-{MAX_CHANGE_CHARS} printable characters")
        require(0 < len(t.outcome) <= MAX_OUTCOME_CHARS and t.outcome.isprintable(), "tried.outcome",
                f"must be 1-{MAX_OUTCOME_CHARS} printable characters")
    return [Tried(t.change, t.outcome) for t in request.tried]


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, config: GeneratorConfig, backend: Backend) -> None:
        self.cfg = config
        self.backend = backend

    def _sampling(self, req: generator_pb2.GenerateRequest) -> Sampling:
        c = self.cfg
        names = ("temperature", "top_k", "top_p", "max_new_tokens")  # SamplingParams' fields, named as the config's
        values = {**{name: getattr(c, name) for name in names}, **request_fields(req.sampling, names)}
        temperature, top_k, top_p, max_new = (values[name] for name in names)
        require_finite("sampling.temperature", temperature, MIN_TEMPERATURE, MAX_TEMPERATURE)
        require(0 < top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {top_p}")
        require(top_k >= 0, "sampling.top_k", f"must not be negative, got {top_k}")
        require(1 <= max_new <= c.max_new_tokens_limit, "sampling.max_new_tokens",
                f"must be in [1, {c.max_new_tokens_limit}], got {max_new}")
        return Sampling(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new)

    def _validate(self, request: generator_pb2.GenerateRequest) -> None:
        """Every field bounded, before anything is tokenized or compiled."""
        require(request.mode in MODE_NAMES, "mode", "must be MODE_DELTA or MODE_FULL")
        require_text("request_id", request.request_id, MAX_REQUEST_ID_CHARS)
        require(request.HasField("baseline") and bool(request.baseline.code.strip()), "baseline.code", "is empty")
        require_baseline("baseline", request.baseline, self.cfg.max_code_bytes)
        require_code("feedback", request.feedback, self.cfg.max_feedback_bytes)
        require_text("adapter", request.adapter, MAX_NAME_CHARS)
        require(1 <= request.n <= self.cfg.max_n, "n", f"must be in [1, {self.cfg.max_n}], got {request.n}")
        most = request.n * (self.cfg.parse_resamples + 1) - 1  # the seeds of the re-samples too
        require(request.seed <= INT64_MAX - most, "seed",
                f"seed + {most} must fit int64 (candidate i is seeded seed + i, re-samples after them), got "
                f"{request.seed} with n={request.n}")
        require(not request.constrained or request.mode == MODE_VALUES["delta"], "constrained",
                "only delta mode has a grammar")
        require(0 <= request.progress_interval_s <= 3600, "progress_interval_s",
                f"must be in [0, 3600] seconds, got {request.progress_interval_s}")

    def Generate(self, request: generator_pb2.GenerateRequest, context):
        self._validate(request)
        sampling = self._sampling(request)
        mode = MODE_NAMES[request.mode]
        baseline = Baseline.from_proto(request.baseline)
        budget = Budget.from_proto(request.budget) if request.HasField("budget") else None
        messages = render_messages(mode, baseline, request.feedback or None, budget=budget, tried=_tried(request))
        adapter = request.adapter or None
        constraint = Constraint(diff_grammar(baseline.code), close=FENCE_CLOSE) if request.constrained else None
        cancel = threading.Event()  # set when the call ends: the client left, its deadline passed, or it finished
        if not context.add_callback(cancel.set):  # the call ended already
            cancel.set()
        log.info(
            "request %s: %d %s candidate(s) for %s (adapter %s, %s)",
            request.request_id or "-",
            request.n,
            mode,
            baseline.name,
            adapter or "none",
            "constrained" if constraint else "free",
        )
        with backend_errors():
            yield from self._answers(request, mode, baseline, messages, sampling, adapter, constraint, cancel)

    def _answers(self, request: generator_pb2.GenerateRequest, mode: str, baseline: Baseline, messages: Messages,
                 sampling: Sampling, adapter: str | None, constraint: Constraint | None,
                 cancel: threading.Event) -> Iterator[generator_pb2.GenerateResponse]:
        """The request's answers as they finish; one whose file does not parse is asked for again (round r seeds
        candidate i with seed + r*n + i), at most parse_resamples times, and only the last one is sent."""
        n, limit = request.n, self.cfg.parse_resamples
        tries = [0] * n
        todo, round_ = list(range(n)), 0
        while todo and not cancel.is_set():
            seeds = [request.seed + round_ * n + i for i in todo]
            again = []
            for gen in self.backend.generate(messages, n=len(todo), sampling=sampling, adapter=adapter, seeds=seeds,
                                             constraint=constraint, progress_s=request.progress_interval_s,
                                             cancel=cancel):
                index = todo[gen.index]
                gen = dataclasses.replace(gen, index=index)
                if not gen.partial and tries[index] < limit and not _parses(mode, baseline.code, gen):
                    tries[index] += 1
                    again.append(index)
                    log.info("candidate %s/%d: its file does not parse; asking again (%d/%d)",
                             request.request_id or "-", index, tries[index], limit)
                    continue
                reply = self._response(gen, adapter, tries[index])
                if not gen.partial:
                    log.info("candidate %s/%d: prompt_tokens=%d output_tokens=%d output_lines=%d latency_s=%.2f "
                             "tokens_per_s=%.1f forced_tokens=%d finish=%s parse_resamples=%d",
                             request.request_id or "-", index, reply.prompt_tokens, reply.output_tokens,
                             reply.output_lines, reply.latency_s, reply.tokens_per_second, gen.forced_tokens,
                             finish_reason_name(gen.finish_reason), tries[index])
                yield reply
            todo, round_ = again, round_ + 1

    def _response(self, gen: Generation, adapter: str | None, parse_resamples: int) -> generator_pb2.GenerateResponse:
        return generator_pb2.GenerateResponse(
            index=gen.index,
            seed=gen.seed,
            raw_text=gen.text,
            prompt_tokens=gen.prompt_tokens,
            output_tokens=gen.output_tokens,
            output_lines=len(gen.text.splitlines()),
            latency_s=gen.latency_s,
            tokens_per_second=gen.output_tokens / gen.latency_s if gen.latency_s > 0 else 0.0,
            model=self.backend.info().model,
            adapter=adapter or "",
            finish_reason=gen.finish_reason,
            forced_tokens=gen.forced_tokens,
            partial=gen.partial,
            parse_resamples=parse_resamples,
        )

    def ListAdapters(self, request, context) -> generator_pb2.ListAdaptersResponse:
        with backend_errors():
            return generator_pb2.ListAdaptersResponse(adapters=self.backend.list_adapters())

    def LoadAdapter(self, request: generator_pb2.LoadAdapterRequest, context) -> generator_pb2.LoadAdapterResponse:
        require(bool(request.name.strip()), "name", "is empty")
        require_text("name", request.name, MAX_NAME_CHARS)
        require(bool(request.path.strip()), "path", "is empty")
        require_text("path", request.path, 4096)
        if self.cfg.backend == "local":
            try:
                local = resolve_adapter(request.path)
            except AdapterError as exc:
                raise InvalidArgument("path", str(exc)) from exc
            require(Path(local).is_dir(), "path",
                    f"{request.path[:200]!r} is not a directory on the generator's host (PEFT format expected)")
        with backend_errors():
            try:
                self.backend.load_adapter(request.name, request.path)
            except BackendUnavailable:
                raise
            except (BackendError, FileNotFoundError, ValueError) as exc:
                raise InvalidArgument("path", str(exc)) from exc
            return generator_pb2.LoadAdapterResponse(adapters=self.backend.list_adapters())

    def GetModelInfo(self, request, context) -> generator_pb2.GetModelInfoResponse:
        with backend_errors():
            info = self.backend.info()
            return generator_pb2.GetModelInfoResponse(
                backend=self.cfg.backend,
                model=info.model,
                context_length=info.context_length,
                adapters=self.backend.list_adapters(),
                constrained_decoding=self.backend.grammars,
            )


def build_server(config: GeneratorConfig) -> ServiceServer:
    backend = create_backend(config.backend, **config.backend_options())  # both checked when the config loaded
    servicer = GeneratorServicer(config, backend)
    server = ServiceServer("generator", config, probe=backend.probe, capacity={"Generate": 1})
    server.add(generator_pb2_grpc.add_GeneratorServiceServicer_to_server, servicer, SERVICE_NAME)
    return server
