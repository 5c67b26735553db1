"""The search's progress display: line-based off a terminal, a live rich bar on one; the counts it shows."""

from __future__ import annotations

import io
import logging
import re

import pytest

from client.progress import ProgressDisplay, stages
from client.records import SearchProgress

# A search of 4 candidates: two asked of the LLM (their tokens streaming in), one answered and evaluated, both
# done, then two more.
STEPS = [SearchProgress(4, generating=2), SearchProgress(4, generating=2, tokens=40),
         SearchProgress(4, generating=2, tokens=95), SearchProgress(4, generating=1, evaluating=1, tokens=30),
         SearchProgress(4, generating=0, evaluating=2), SearchProgress(4, evaluating=1, done=1, valid=1),
         SearchProgress(4, done=2, valid=1), SearchProgress(4, generating=2, done=2, valid=1),
         SearchProgress(4, evaluating=2, done=2, valid=1),
         SearchProgress(4, done=4, valid=2, improved=1, best_gain=4.2)]


def test_off_a_terminal_one_plain_line_per_finished_candidate(caplog) -> None:
    stream = io.StringIO()  # not a TTY
    with caplog.at_level(logging.INFO, logger="deltanas.progress"), ProgressDisplay(stream) as show:
        for step in STEPS:
            show(step)
    assert stream.getvalue() == ""  # nothing drawn: the lines go through logging
    lines = [r.getMessage() for r in caplog.records]
    assert [re.search(r"done (\d)/4", line).group(1) for line in lines] == ["0", "1", "2", "4"]
    assert "generating 2, evaluating 0, done 0/4 (0 valid, 0 improved)" in lines[0]
    assert lines[-1].startswith(
        "progress: generating 0, evaluating 0, done 4/4 (2 valid, 1 improved, best +4.2 points)")
    assert all("candidates/min" in line and "ETA" in line and "\x1b" not in line for line in lines)
    assert "ETA unknown" in lines[0] and "ETA 0 s" in lines[-1]


def test_on_a_terminal_a_live_bar_with_the_stage_counts() -> None:
    stream = io.StringIO()
    with ProgressDisplay(stream, live=True) as show:
        for step in STEPS:
            show(step)
    out = stream.getvalue()
    assert "\x1b[" in out  # drawn with terminal control sequences
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "4/4" in plain and "done 4/4 (2 valid, 1 improved, best +4.2" in plain
    assert "generating 2 (95 tokens so far)" in plain  # the tokens stream in on the bar


def test_stage_words_count_the_tokens_written_so_far() -> None:
    assert stages(SearchProgress(3, generating=2, tokens=412)).startswith("generating 2 (412 tokens so far), ")
    assert stages(SearchProgress(3, generating=2)).startswith("generating 2, ")  # no report yet


def test_stage_words_name_skipped_candidates_on_resume() -> None:
    assert stages(SearchProgress(6, done=3, skipped=3, valid=1)) == (
        "generating 0, evaluating 0, done 3/6 (1 valid, 0 improved, 3 already recorded)")


def test_rate_and_eta_leave_out_what_a_resume_skipped() -> None:
    show = ProgressDisplay(io.StringIO())
    show.start -= 60  # one minute ago
    rate, eta = show.rate_and_eta(SearchProgress(10, done=6, skipped=4))
    assert rate == pytest.approx(2.0, abs=0.05) and eta == pytest.approx(120, abs=3)
    assert show.rate_and_eta(SearchProgress(10, done=4, skipped=4)) == (0.0, None)
