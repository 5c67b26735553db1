"""One way to serve every deltanas service: interceptors, health, reflection, auth, TLS, graceful drain.

    server = ServiceServer("curator", config)    # config: a ServerConfig (host, port, token, TLS, ...)
    server.add(curator_pb2_grpc.add_CuratorServiceServicer_to_server, servicer, SERVICE_NAMES["curator"])
    server.start(); server.wait()          # SIGTERM/SIGINT: stop accepting, drain in-flight calls, exit
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from deltanas.admission import Admission
from deltanas.config import ConfigError, option
from deltanas.errors import Cancelled, InvalidArgument, ServiceError
from deltanas.security import TokenAuthInterceptor, server_credentials
from deltanas.wire import Malformed, lenient

log = logging.getLogger(__name__)

MAX_MESSAGE_MB = 8
MAX_DETAILS_BYTES = 1024  # percent-encoded in grpc-message, so at most about 3 KiB of the 8 KiB trailers


@dataclass
class ServerConfig:
    """Settings every service shares; each service's config inherits them (DELTANAS_<SERVICE>_<FIELD> too)."""

    host: str = option("127.0.0.1", "interface to bind; loopback unless you deploy across machines")
    port: int = option(0, "port to bind (0: any free port)")
    grace_s: float = option(30.0, "seconds in-flight calls get to finish on SIGTERM")
    auth_token: str = option("", "shared token every deltanas RPC must carry as 'authorization: Bearer <token>' "
                             "(empty: none; health stays open); prefer the environment variable: flags show in ps",
                             repr=False)
    tls_cert: Path | None = option(None, "PEM certificate chain to serve TLS with (needs tls_key)")
    tls_key: Path | None = option(None, "PEM private key of tls_cert")
    tls_client_ca: Path | None = option(None, "PEM CA bundle; when set, clients must present a certificate it "
                                        "signed (mutual TLS)")
    max_message_mb: int = option(MAX_MESSAGE_MB, "largest request or response message, in MiB")
    health_interval_s: float = option(10.0, "seconds between health probes after start, so health follows the "
                                      "device or backend (0: probe only at start)")
    max_queue: int = option(16, "calls that may wait for a busy service (evaluator slots, the generator's model, "
                            "curator writes) on top of those it serves at once; more are refused with "
                            "RESOURCE_EXHAUSTED")
    max_other_calls: int = option(32, "calls of the other methods (listings, status, novelty checks) served at "
                                  "once; more are refused with RESOURCE_EXHAUSTED (health checks never are)")

    def __post_init__(self) -> None:
        if self.max_message_mb < 1:
            raise ConfigError(f"max_message_mb: must be at least 1, got {self.max_message_mb}")
        if self.max_queue < 0:
            raise ConfigError(f"max_queue: must not be negative, got {self.max_queue}")
        if self.max_other_calls < 1:
            raise ConfigError(f"max_other_calls: must be at least 1, got {self.max_other_calls}")
        if self.health_interval_s < 0:
            raise ConfigError(f"health_interval_s: must not be negative, got {self.health_interval_s}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _details(message: str) -> str:
    """`message` cut to MAX_DETAILS_BYTES: an error that echoes a huge input must still fit the trailers (8 KiB)."""
    data = message.encode()
    if len(data) <= MAX_DETAILS_BYTES:
        return message
    return f"{data[:MAX_DETAILS_BYTES].decode(errors='ignore')}... ({len(message)} characters)"


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, ServiceError):
        log.info("rpc %s -> %s: %s", method, exc.code.name, _details(str(exc)))
        context.abort(exc.code, _details(str(exc)))
    log.exception("rpc %s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, _details(f"{type(exc).__name__}: {exc}"))


def _admit(request: Any, context: grpc.ServicerContext) -> None:
    """Raises for a request that did not parse, or a call whose client left before it started."""
    if isinstance(request, Malformed):
        raise InvalidArgument(request.field, request.problem)
    if not context.is_active():
        raise Cancelled("the client cancelled the call (or its deadline passed) before it started")


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns ServiceError into its status code and anything else into INTERNAL, with a log line; a request whose
    bytes do not parse into INVALID_ARGUMENT naming the field (deltanas.wire), and a call whose client left before
    it started into CANCELLED without running it."""

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = details.method
        handler = handler._replace(request_deserializer=lenient(handler.request_deserializer))
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    _admit(request, context)
                    return inner(request, context)
                except Exception as exc:
                    _abort(context, exc, method)

            return handler._replace(unary_unary=unary)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    _admit(request, context)
                    yield from inner_stream(request, context)
                except Exception as exc:
                    _abort(context, exc, method)

            return handler._replace(unary_stream=stream)
        return handler


class ServiceServer:
    """A grpc.Server bound to `config`'s address with its drain time, message limit, token and TLS (the one place
    for them), health (exercised by `probe`, again every `config.health_interval_s`) and reflection."""

    def __init__(self, name: str, config: ServerConfig, probe: Callable[[], None] | None = None,
                 capacity: dict[str, int] | None = None,
                 interceptors: list[grpc.ServerInterceptor] | None = None) -> None:
        """`capacity`: method name -> calls it serves at once (deltanas.admission); `config.max_queue` more may
        wait, `config.max_other_calls` of the other methods run at once."""
        self.name = name
        self.config = config
        self.grace_s = config.grace_s
        self.authenticated = bool(config.auth_token)
        credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
        self.tls = credentials is not None
        self._probe = probe
        self._health_interval_s = config.health_interval_s
        self._healthy: bool | None = None
        self._services: list[str] = []
        self.admission = Admission(name, capacity or {}, config.max_queue, config.max_other_calls)
        auth = [TokenAuthInterceptor(name, config.auth_token)] if config.auth_token else []
        message_bytes = config.max_message_mb * 1024 * 1024
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=name),  # admission routes every call
            interceptors=[self.admission, *auth, *(interceptors or []), ErrorInterceptor()],
            options=[("grpc.max_receive_message_length", message_bytes),
                     ("grpc.max_send_message_length", message_bytes)],
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        address = f"{config.host}:{config.port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"{name}: cannot bind {address}")
        self.address = f"{config.host}:{self.port}"
        self._stopped = threading.Event()
        self._finished = threading.Event()
        self._stop_hooks: list[Callable[[], None]] = []
        if not _is_loopback(config.host) and not (self.authenticated and self.tls):
            log.warning("%s listens on %s without %s: set auth_token and TLS off loopback", name, self.address,
                        " and ".join(w for w, on in (("a token", self.authenticated), ("TLS", self.tls)) if not on))

    def add(self, register: Callable[[Any, grpc.Server], None], servicer: Any, service_name: str) -> None:
        register(servicer, self._server)
        self._services.append(service_name)

    def start(self) -> ServiceServer:
        reflection.enable_server_reflection([*self._services, reflection.SERVICE_NAME, health.SERVICE_NAME],
                                            self._server)
        self._server.start()
        self.set_serving(self.check())
        if self._probe is not None and self._health_interval_s > 0:
            threading.Thread(target=self._watch_health, name=f"{self.name}-health", daemon=True).start()
        log.info("%s serving on %s (%s)", self.name, self.address, ", ".join(self._services))
        return self

    def _watch_health(self) -> None:
        while not self._stopped.wait(self._health_interval_s):
            self.set_serving(self.check())

    def check(self) -> bool:
        """Runs the service's probe (e.g. a real forward pass); True when it passes. Logs each change."""
        error: Exception | None = None
        if self._probe is not None:
            try:
                self._probe()
            except Exception as exc:
                error = exc
        ok = error is None
        if ok != self._healthy:
            if ok:
                log.info("%s health probe passes", self.name)
            else:
                log.warning("%s health probe fails, NOT_SERVING until it passes: %s: %s", self.name,
                            type(error).__name__, error)
        self._healthy = ok
        return ok

    def set_serving(self, ok: bool) -> None:
        if self._stopped.is_set():
            return  # draining: health already says NOT_SERVING and must stay so
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
        self.admission.close()
        for hook in self._stop_hooks:
            hook()
        log.info("%s stopped", self.name)
        self._finished.set()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Runs `hook` after the drain, e.g. to end background work that must not outlive the server."""
        self._stop_hooks.append(hook)

    def wait(self) -> None:
        """Blocks until SIGTERM/SIGINT, then drains (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        self._server.wait_for_termination()
        self._finished.wait()  # the stop hooks have run: no thread is left to log while the interpreter exits
