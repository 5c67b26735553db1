"""Serve the curator: python -m curator_svc --help."""

from deltanas.services import service_main

service_main("curator")
