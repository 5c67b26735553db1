"""The harness the tests and the benchmarks share (no service imports it): real services as child processes and
a local Ray cluster (processes), a small real LEMUR model and its evaluation requests (candidates), a corpus of
damaged diffs (damage) and the held-out baselines generation is measured on (baselines).

It lives in the package, like numpy.testing, because both tests/ and bench/ use it and neither may import the
other.
"""
