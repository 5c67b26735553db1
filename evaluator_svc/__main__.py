"""Serve the evaluator: python -m evaluator_svc --help."""

from deltanas.service_registry import service_main

service_main("evaluator")
