"""Starts the three services in this process on loopback: the same gRPC path as a deployment.

    with EmbeddedServices(generator={"local.model": "smollm2-135m"}) as endpoints:
        ...  # endpoints.curator, endpoints.generator, endpoints.evaluators
"""

from __future__ import annotations

import logging
from typing import Any

from client.channels import Endpoints
from deltanas.server import ServiceServer
from deltanas.service_registry import SERVICES

log = logging.getLogger("deltanas.embedded")


class EmbeddedServices:
    """Curator, generator and one evaluator on 127.0.0.1 with free ports; stopped (drained) on exit."""

    def __init__(self, **overrides: dict[str, Any]) -> None:
        unknown = set(overrides) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
        self._overrides = overrides
        self.servers: dict[str, ServiceServer] = {}

    def start(self) -> Endpoints:
        try:
            for name, spec in SERVICES.items():
                config = spec.load(overrides={"host": "127.0.0.1", "port": 0, **self._overrides.get(name, {})})
                log.info("starting embedded %s", name)
                self.servers[name] = spec.build(config).start()
        except BaseException:
            self.stop()
            raise
        return Endpoints(curator=self.servers["curator"].address, generator=self.servers["generator"].address,
                         evaluators=[self.servers["evaluator"].address])

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop(grace_s=5)
        self.servers.clear()

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
