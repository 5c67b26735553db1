"""Serve the generator: python -m generator_svc --help."""

from deltanas.service_registry import service_main

service_main("generator")
