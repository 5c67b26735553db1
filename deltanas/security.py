"""Shared-token authentication and TLS for every deltanas service, and the client side of both.

    DELTANAS_EVALUATOR_AUTH_TOKEN=s3cret deltanas serve evaluator          # clients send the same token
    deltanas serve evaluator --tls-cert server.pem --tls-key server.key   # TLS; add --tls-client-ca for mTLS

Every deltanas RPC, and server reflection (it lists the API to whoever asks), needs
`authorization: Bearer <token>` when a token is configured; `grpc.health.v1.Health` stays open so that
orchestrators can probe without the secret. A missing or wrong token gets UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from deltanas.admission import refusal

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
AUTH_HEADER = "authorization"


def bearer(token: str) -> tuple[str, str]:
    """The metadata pair that carries `token`."""
    return AUTH_HEADER, f"Bearer {token}"


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Admits a call only with `authorization: Bearer <token>` (compared in constant time); health stays open."""

    def __init__(self, service: str, token: str) -> None:
        if not token:
            raise ValueError("auth_token: is empty")
        self._service = service
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        presented = [v for k, v in details.invocation_metadata or () if k == AUTH_HEADER]
        if not presented:
            log.warning("%s: rpc %s refused: no authorization metadata", self._service, details.method)
            return refusal(handler, grpc.StatusCode.UNAUTHENTICATED,
                           f"{self._service}: missing 'authorization: Bearer <token>' metadata")
        value = presented[0].encode() if isinstance(presented[0], str) else presented[0]
        if not hmac.compare_digest(value, self._expected):
            log.warning("%s: rpc %s refused: wrong token", self._service, details.method)
            return refusal(handler, grpc.StatusCode.UNAUTHENTICATED, f"{self._service}: wrong token")
        return handler


def _read(field: str, path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror or exc}") from exc


def server_credentials(cert: Path | None, key: Path | None, client_ca: Path | None = None
                       ) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files (None without a certificate); `client_ca` also requires client certs."""
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError("tls_client_ca: needs tls_cert and tls_key (mutual TLS runs over TLS)")
        return None
    if cert is None or key is None:
        raise ValueError(f"{'tls_key' if cert else 'tls_cert'}: tls_cert and tls_key go together")
    chain = _read("tls_cert", cert)
    return grpc.ssl_server_credentials(
        [(_read("tls_key", key), chain)],
        root_certificates=_read("tls_client_ca", client_ca) if client_ca else None,
        require_client_auth=client_ca is not None)


def channel_credentials(root_cert: Path | None, client_cert: Path | None = None, client_key: Path | None = None
                        ) -> grpc.ChannelCredentials:
    """Client TLS credentials: `root_cert` (None: the system roots) and an optional client pair for mTLS."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("tls_client_cert: tls_client_cert and tls_client_key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read("tls_root_cert", root_cert) if root_cert else None,
        private_key=_read("tls_client_key", client_key) if client_key else None,
        certificate_chain=_read("tls_client_cert", client_cert) if client_cert else None)


class _TokenClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the bearer token to the metadata of every call on a channel."""

    def __init__(self, token: str) -> None:
        self._pair = bearer(token)

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._pair]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Callable, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Callable, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: float | None, metadata: list, credentials: Any,
                 wait_for_ready: bool | None, compression: Any) -> None:
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """`channel` sending `authorization: Bearer <token>` on every call (unchanged without a token)."""
    return grpc.intercept_channel(channel, _TokenClientInterceptor(token)) if token else channel
