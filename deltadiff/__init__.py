"""deltadiff: the diff format shared by every deltanas service: make, extract, apply, measure.

    from deltadiff import make_diff, extract_diff, apply_diff, measure
    new_code = apply_diff(base_code, extract_diff(llm_text))

Tests: `.venv/bin/python -m pytest tests/test_deltadiff_*.py`.
Benchmark against GNU patch: `.venv/bin/python bench/bench_apply.py`.
"""

from deltadiff.apply import apply_diff
from deltadiff.errors import ApplyError, DiffError, ExtractError
from deltadiff.extract import extract_code, extract_diff
from deltadiff.grammar import diff_grammar
from deltadiff.identity import answer_program, change_summary, code_fingerprint, complete_lines, same_code
from deltadiff.make import make_diff
from deltadiff.measure import DiffStats, measure
from deltadiff.normalize import normalize_diff

__all__ = [
    "ApplyError",
    "DiffError",
    "DiffStats",
    "ExtractError",
    "answer_program",
    "apply_diff",
    "change_summary",
    "code_fingerprint",
    "complete_lines",
    "diff_grammar",
    "extract_code",
    "extract_diff",
    "make_diff",
    "measure",
    "normalize_diff",
    "same_code",
]
