"""Admission control for every deltanas service: a bounded number of calls per method, refusals that cost nothing,
health checks apart.

    admission = Admission("evaluator", capacity={"Evaluate": 2}, queue=16, others=32)
    grpc.server(pool, interceptors=[admission, auth, ..., ErrorInterceptor()])   # admission first

A call is counted when grpc accepts it, on grpc's polling thread, before it waits anywhere: against the gate of its
method (`capacity` calls that run at once plus `queue` that may wait for one), or against the gate all other methods
of the service share (`others` calls). Beyond a gate's limit the call is refused at once with RESOURCE_EXHAUSTED.
Each gate runs its calls on a thread pool of exactly its limit, so an admitted call never waits for a thread and a
flood of one method cannot take the threads of another; it counts from admission until its task ends, whether the
handler ran or not (a client that left before its request arrived). Health checks have their own pool and are never
refused; refusals (ours and the token check's) run on a pool of their own.

grpc must not reject accepted calls itself (no `maximum_concurrent_rpcs`): a call admitted here is always run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

log = logging.getLogger("deltanas.admission")

HEALTH_PREFIX = "/grpc.health.v1.Health/"
BEHAVIORS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class Gate(futures.ThreadPoolExecutor):
    """A thread pool of `limit` threads that admits at most `limit` calls at once."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(max_workers=limit, thread_name_prefix=name)
        self.name, self.limit = name, limit
        self.admitted = 0
        self.refused = 0  # since the gate last admitted a call
        self._count = threading.Lock()

    def admit(self) -> bool:
        """Counts one more call unless `limit` are admitted; False means refuse it."""
        with self._count:
            if self.admitted >= self.limit:
                self.refused += 1
                first = self.refused == 1
            else:
                self.admitted += 1
                refused, self.refused = self.refused, 0
                if refused:
                    log.info("%s: admitting again after refusing %d call(s)", self.name, refused)
                return True
        if first:
            log.warning("%s: %d calls admitted (running or waiting), refusing more with RESOURCE_EXHAUSTED",
                        self.name, self.limit)
        return False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> futures.Future:
        try:
            future = super().submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down
            self._leave()
            raise
        future.add_done_callback(lambda _: self._leave())
        return future

    def _leave(self) -> None:
        with self._count:
            self.admitted -= 1


def _behavior(handler: grpc.RpcMethodHandler) -> str:
    return next(kind for kind in BEHAVIORS if getattr(handler, kind) is not None)


def on_pool(handler: grpc.RpcMethodHandler, pool: futures.ThreadPoolExecutor) -> grpc.RpcMethodHandler:
    """`handler`, run on `pool` (grpc's per-handler `experimental_thread_pool`)."""
    kind = _behavior(handler)
    inner = getattr(handler, kind)

    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        return inner(request, context)

    behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
    behavior.refusal = getattr(inner, "refusal", False)  # type: ignore[attr-defined]
    return handler._replace(**{kind: behavior})


def refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers `code` with `message` without running it."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    refuse.refusal = True  # type: ignore[attr-defined]
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class Admission(grpc.ServerInterceptor):
    """The gates of one service (see the module doc); the first interceptor of its server."""

    def __init__(self, service: str, capacity: dict[str, int], queue: int, others: int) -> None:
        self.service = service
        self.gates = {method: Gate(f"{service}-{method}", room + queue) for method, room in capacity.items()}
        self.others = Gate(f"{service}-calls", others)
        self.health = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{service}-health")
        self.refusals = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{service}-refusals")

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        if details.method.startswith(HEALTH_PREFIX):
            return on_pool(handler, self.health)
        if getattr(getattr(handler, _behavior(handler)), "refusal", False):
            return on_pool(handler, self.refusals)
        method = details.method.rsplit("/", 1)[-1]
        gate = self.gates.get(method, self.others)
        if gate.admit():
            return on_pool(handler, gate)
        scope = "" if method in self.gates else " of its other methods"
        message = (f"{method}: the {self.service} has {gate.limit} calls{scope} admitted (running or waiting for "
                   "capacity); retry later or elsewhere")
        return on_pool(refusal(handler, grpc.StatusCode.RESOURCE_EXHAUSTED, message), self.refusals)

    def close(self) -> None:
        """Stops the pools' idle threads (after the server stopped)."""
        for pool in (*self.gates.values(), self.others, self.health, self.refusals):
            pool.shutdown(wait=False, cancel_futures=True)
