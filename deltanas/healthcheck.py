"""Container health probe: exits 0 only when a deltanas service answers grpc.health.v1 with SERVING.

    python -m deltanas.healthcheck 127.0.0.1:50063    # an address
    python -m deltanas.healthcheck evaluator          # 127.0.0.1:<the evaluator's configured port>
    python -m deltanas.healthcheck                    # the service named by $DELTANAS_SERVICE (the images set it)

A service name reads its port the way the service does (defaults, then DELTANAS_<SERVICE>_PORT), so the probe
follows a changed port. Anything but SERVING exits 1 with one line on stderr that names the address.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE_ENV = "DELTANAS_SERVICE"


def service_address(target: str) -> str:
    """`host:port` as given, or a service name as 127.0.0.1:<its configured port>."""
    if ":" in target:
        return target
    from deltanas.service_registry import SERVICES

    if target not in SERVICES:
        raise ValueError(f"{target!r} is neither host:port nor a service ({', '.join(SERVICES)})")
    return f"127.0.0.1:{SERVICES[target].load().port}"


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(True, 'SERVING') or (False, why); never raises for an unreachable or failing server."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deltanas.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=os.environ.get(SERVICE_ENV),
                        help=f"host:port or curator|generator|evaluator (default: ${SERVICE_ENV})")
    parser.add_argument("--service", default="", help="gRPC service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    if not args.target:
        print(f"healthcheck: give host:port or a service name (or set ${SERVICE_ENV})", file=sys.stderr)
        return 1
    try:
        address = service_address(args.target)
    except ValueError as exc:  # includes a ConfigError from a bad DELTANAS_* variable
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    ok, why = check(address, args.service, args.timeout)
    if not ok:
        print(f"healthcheck: {address}: not serving: {why}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
