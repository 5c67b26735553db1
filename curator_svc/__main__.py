"""Serve the curator: python -m curator_svc --help."""

from deltanas.service_registry import service_main

service_main("curator")
