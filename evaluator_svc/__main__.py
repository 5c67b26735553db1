"""Serve the evaluator: python -m evaluator_svc --help."""

from deltanas.services import service_main

service_main("evaluator")
