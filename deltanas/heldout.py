"""The held-out split: LEMUR models that never enter training data, and from which benchmarks draw baselines.

A model is held out when int(sha256(name), 16) % 10 == 0 (about one model in ten). The rule depends on the
name alone, so every service, test and benchmark agrees on it without sharing state:

    >>> is_held_out("rag-5ade978e0153718fa4c0b4ceb533ce32")   # the embedded preset's baseline
    True
"""

from __future__ import annotations

import hashlib

MODULUS = 10


def is_held_out(name: str) -> bool:
    """True for the models no training set may hold (on either side of a pair, nor as a candidate's base)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % MODULUS == 0
