"""gRPC adapter of the generator: validates, renders the prompt template, streams candidates.

python -m generator_svc --model smollm2-135m --port 50062
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deltadiff.grammar import FENCE_CLOSE, diff_grammar
from deltanas.adapters import AdapterError, resolve_adapter
from deltanas.baseline import Baseline
from deltanas.config import request_fields
from deltanas.errors import InvalidArgument, NotFound, Unavailable, require
from deltanas.prompts import render_messages
from deltanas.server import ServiceServer
from deltanas.v1 import generator_pb2, generator_pb2_grpc
from deltanas.vocabulary import MODE_NAMES, SERVICE_NAMES, finish_reason_name
from generator_svc.backends import create_backend
from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Constraint,
    Generation,
    GrammarRefused,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
)
from generator_svc.config import GeneratorConfig

log = logging.getLogger(__name__)

SERVICE_NAME = SERVICE_NAMES["generator"]


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


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, config: GeneratorConfig, backend: Backend) -> None:
        self.cfg = config
        self.backend = backend

    def _sampling(self, req: generator_pb2.GenerateRequest) -> Sampling:
        c = self.cfg
        names = ("temperature", "top_k", "top_p", "max_new_tokens")  # SamplingParams' fields, named as the config's
        values = {**{name: getattr(c, name) for name in names}, **request_fields(req.sampling, names)}
        temperature, top_k, top_p, max_new = (values[name] for name in names)
        require(0 < temperature <= 5, "sampling.temperature", f"must be in (0, 5], got {temperature}")
        require(0 < top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {top_p}")
        require(top_k >= 0, "sampling.top_k", f"must not be negative, got {top_k}")
        require(1 <= max_new <= c.max_new_tokens_limit, "sampling.max_new_tokens",
                f"must be in [1, {c.max_new_tokens_limit}], got {max_new}")
        return Sampling(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new)

    def Generate(self, request: generator_pb2.GenerateRequest, context):
        require(request.mode in MODE_NAMES, "mode", "must be MODE_DELTA or MODE_FULL")
        require(request.HasField("baseline") and bool(request.baseline.code.strip()), "baseline.code", "is empty")
        require(1 <= request.n <= self.cfg.max_n, "n", f"must be in [1, {self.cfg.max_n}], got {request.n}")
        sampling = self._sampling(request)
        mode = MODE_NAMES[request.mode]
        baseline = Baseline.from_proto(request.baseline)
        messages = render_messages(mode, baseline, request.feedback or None)
        seeds = [request.seed + i for i in range(request.n)]
        adapter = request.adapter or None
        require(not request.constrained or mode == "delta", "constrained", "only delta mode has a grammar")
        require(0 <= request.progress_interval_s <= 3600, "progress_interval_s",
                f"must be in [0, 3600] seconds, got {request.progress_interval_s}")
        constraint = Constraint(diff_grammar(baseline.code), close=FENCE_CLOSE) if request.constrained else None
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
            for gen in self.backend.generate(messages, n=request.n, sampling=sampling, adapter=adapter, seeds=seeds,
                                             constraint=constraint, progress_s=request.progress_interval_s):
                reply = self._response(mode, baseline, gen, adapter)
                if gen.partial:
                    yield reply
                    continue
                log.info("candidate %s/%d: prompt_tokens=%d output_tokens=%d output_lines=%d latency_s=%.2f "
                         "tokens_per_s=%.1f forced_tokens=%d finish=%s", request.request_id or "-",
                         gen.index, reply.prompt_tokens, reply.output_tokens, reply.output_lines, reply.latency_s,
                         reply.tokens_per_second, gen.forced_tokens, finish_reason_name(gen.finish_reason))
                yield reply

    def _response(
        self, mode: str, baseline: Baseline, gen: Generation, adapter: str | None
    ) -> generator_pb2.GenerateResponse:
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
        )

    def ListAdapters(self, request, context) -> generator_pb2.ListAdaptersResponse:
        with backend_errors():
            return generator_pb2.ListAdaptersResponse(adapters=self.backend.list_adapters())

    def LoadAdapter(self, request: generator_pb2.LoadAdapterRequest, context) -> generator_pb2.LoadAdapterResponse:
        require(bool(request.name.strip()), "name", "is empty")
        require(bool(request.path.strip()), "path", "is empty")
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
    server = ServiceServer("generator", config, probe=backend.probe)
    server.add(generator_pb2_grpc.add_GeneratorServiceServicer_to_server, servicer, SERVICE_NAME)
    return server
