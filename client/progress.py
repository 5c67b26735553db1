"""How `deltanas run` shows a search going: a live rich bar on a terminal, log lines everywhere else.

    with ProgressDisplay() as show:                 # stderr; a bar when it is a terminal
        Search(cfg, services, tracker, on_progress=show).run()

Both say, per stage, how many candidates the LLM is writing (and the tokens it has written of them so far, as
the generator streams them in), how many are being evaluated and how many are done (valid among them), with
the rate and the ETA. Off a terminal (CI, a pipe, a log file) one line is logged
per finished candidate, so the output stays line-based and greppable.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.records import SearchProgress

log = logging.getLogger("deltanas.progress")


def stages(p: SearchProgress) -> str:
    """The per-stage counts in words."""
    writing = f" ({p.tokens} tokens so far)" if p.generating and p.tokens else ""
    best = f", best {p.best_gain:+.1f} points" if p.best_gain is not None else ""
    return (f"generating {p.generating}{writing}, evaluating {p.evaluating}, done {p.done}/{p.total} "
            f"({p.valid} valid, {p.improved} improved{best}" + (f", {p.skipped} already recorded" if p.skipped
                                                                else "") + ")")


class ProgressDisplay:
    """`on_progress` of a Search. Rate and ETA count only candidates finished in this process (not skipped ones)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.start = time.monotonic()
        self._last_done = -1
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(TextColumn("[bold]candidates"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stages]}"), TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=console,
                                 refresh_per_second=4)
            self._bar.start()
            self._task = self._bar.add_task("search", total=None, stages="starting", rate="", eta="-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rate_and_eta(self, p: SearchProgress) -> tuple[float, float | None]:
        """Candidates per minute finished here, and the seconds left at that rate (None until one finished)."""
        finished, elapsed = p.done - p.skipped, time.monotonic() - self.start
        if finished <= 0 or elapsed <= 0:
            return 0.0, None
        return finished / elapsed * 60, (p.total - p.done) / (finished / elapsed)

    def __call__(self, p: SearchProgress) -> None:
        rate, eta = self.rate_and_eta(p)
        eta_text = f"{eta:.0f} s" if eta is not None else "unknown"
        if self._bar is not None:
            self._bar.update(self._task, total=p.total, completed=p.done, stages=stages(p), rate=f"{rate:.1f}/min",
                             eta=eta_text, refresh=True)  # drawn now: every change shows, the tokens too
        elif p.done != self._last_done:
            log.info("progress: %s; %.1f candidates/min, elapsed %.0f s, ETA %s", stages(p), rate,
                     time.monotonic() - self.start, eta_text)
        self._last_done = p.done
