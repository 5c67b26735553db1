"""The registry of deltanas services and the one way to run any of them.

    python -m evaluator_svc --port 50063          # same as: deltanas serve evaluator --port 50063
    DELTANAS_EVALUATOR_SLOTS=2 deltanas serve evaluator

Each service package has `config.py` (a dataclass + ENV_PREFIX) and `service.py` with
`build_server(config) -> ServiceServer` (built with `ServiceServer(name, config)`, which applies the shared
ServerConfig: token, TLS, message limit); modules are imported lazily so that an evaluator host never
imports transformers and a generator host never imports torchvision.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from typing import Any

from deltanas.config import ConfigError, add_config_arguments, config_overrides, load_config
from deltanas.logs import setup_logging
from deltanas.server import ServerConfig, ServiceServer

log = logging.getLogger(__name__)

# Settings a server cannot take after construction: a server that was not built from the config ignores them.
_SECURITY_FIELDS = ("auth_token", "tls_cert", "tls_key", "tls_client_ca", "max_message_mb")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    config_class: str

    def config_type(self) -> type:
        return getattr(importlib.import_module(f"{self.package}.config"), self.config_class)

    def env_prefix(self) -> str:
        return importlib.import_module(f"{self.package}.config").ENV_PREFIX

    def build(self, config: Any) -> ServiceServer:
        """The service's server; refuses (fails closed) one that would silently ignore token or TLS settings."""
        server = importlib.import_module(f"{self.package}.service").build_server(config)
        if server.config is not config:
            defaults = ServerConfig()
            ignored = [f for f in _SECURITY_FIELDS if getattr(config, f) != getattr(defaults, f)]
            if ignored:
                server.stop(0)
                raise ConfigError(f"{ignored[0]}: {self.package}.service.build_server does not apply it; build the "
                                  "server with ServiceServer(name, config)")
        return server

    def load(self, path: str | None = None, overrides: dict[str, Any] | None = None) -> Any:
        return load_config(self.config_type(), path, self.env_prefix(), overrides)


SERVICES = {s.name: s for s in (
    ServiceSpec("curator", "curator_svc", "CuratorConfig"),
    ServiceSpec("generator", "generator_svc", "GeneratorConfig"),
    ServiceSpec("evaluator", "evaluator_svc", "EvaluatorConfig"),
)}


def serve(name: str, args: argparse.Namespace) -> None:
    """Loads the config (file, env, flags), serves until SIGTERM, then drains."""
    spec = SERVICES[name]
    config = spec.load(getattr(args, "config", None), config_overrides(args, spec.config_type()))
    server = spec.build(config).start()
    log.info("%s ready on %s", name, server.address)
    server.wait()


def service_main(name: str, argv: list[str] | None = None) -> None:
    """`python -m <service>_svc` entry point."""
    spec = SERVICES[name]
    parser = argparse.ArgumentParser(prog=f"python -m {spec.package}", description=f"Serve the deltanas {name}.")
    parser.add_argument("--config", help="TOML file with config keys (unknown keys are errors)")
    add_config_arguments(parser, spec.config_type())
    args = parser.parse_args(argv)
    setup_logging()
    serve(name, args)
