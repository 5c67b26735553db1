"""One way to serve every deltanas service: interceptor, health, reflection, graceful drain.

    server = ServiceServer("curator", host="127.0.0.1", port=50061)
    server.add(curator_pb2_grpc.add_CuratorServiceServicer_to_server, servicer, "deltanas.v1.CuratorService")
    server.start(); server.wait()          # SIGTERM/SIGINT: stop accepting, drain in-flight calls, exit
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from deltanas.errors import ServiceError

log = logging.getLogger("deltanas.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, ServiceError):
        log.info("rpc %s -> %s: %s", method, exc.code.name, exc)
        context.abort(exc.code, str(exc))
    log.exception("rpc %s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns ServiceError into its status code and anything else into INTERNAL, with a log line."""

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = details.method
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner(request, context)
                except Exception as exc:
                    _abort(context, exc, method)

            return handler._replace(unary_unary=unary)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner_stream(request, context)
                except Exception as exc:
                    _abort(context, exc, method)

            return handler._replace(unary_stream=stream)
        return handler


class ServiceServer:
    """A grpc.Server bound to one address with health (exercised by `probe`) and reflection."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0, max_workers: int = 16,
                 grace_s: float = 30.0, probe: Callable[[], None] | None = None,
                 interceptors: list[grpc.ServerInterceptor] | None = None,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.name = name
        self.grace_s = grace_s
        self._probe = probe
        self._services: list[str] = []
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
            interceptors=[*(interceptors or []), ErrorInterceptor()],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        address = f"{host}:{port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"{name}: cannot bind {address}")
        self.address = f"{host}:{self.port}"
        self._stopped = threading.Event()

    def add(self, register: Callable[[Any, grpc.Server], None], servicer: Any, service_name: str) -> None:
        register(servicer, self._server)
        self._services.append(service_name)

    def start(self) -> ServiceServer:
        reflection.enable_server_reflection([*self._services, reflection.SERVICE_NAME, health.SERVICE_NAME],
                                            self._server)
        self._server.start()
        self.set_serving(self.check())
        log.info("%s serving on %s (%s)", self.name, self.address, ", ".join(self._services))
        return self

    def check(self) -> bool:
        """Runs the service's probe (e.g. a real forward pass); True when it passes."""
        if self._probe is None:
            return True
        try:
            self._probe()
            return True
        except Exception:
            log.exception("%s health probe failed", self.name)
            return False

    def set_serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ["", *self._services]:
            self.health.set(service, status)

    def stop(self, grace_s: float | None = None) -> None:
        """Stops accepting calls, lets in-flight calls finish for up to `grace_s`, then stops."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        log.info("%s draining in-flight calls (grace %.0f s)", self.name, self.grace_s if grace_s is None else grace_s)
        self._server.stop(self.grace_s if grace_s is None else grace_s).wait()
        log.info("%s stopped", self.name)

    def wait(self) -> None:
        """Blocks until SIGTERM/SIGINT, then drains (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        self._server.wait_for_termination()
        self._stopped.wait()
