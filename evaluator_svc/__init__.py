"""Evaluator: staged validity checks and sandboxed one-epoch training of candidate models."""
