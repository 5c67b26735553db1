"""Serve the generator: python -m generator_svc --help."""

from deltanas.services import service_main

service_main("generator")
