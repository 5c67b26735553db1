"""Prompt templates as files, shared by the curator (training data) and the generator (inference).

Training and inference must see byte-identical prompts, so both render through this module:

    >>> msgs = render_messages("delta", baseline)            # system + user chat messages
    >>> target = render_target("delta", diff_text)           # what the assistant should answer
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from deltanas.baseline import Baseline
from deltanas.vocabulary import MODES

TEMPLATE_DIR = Path(__file__).with_name("prompt_templates")
_FENCE = {"delta": "diff", "full": "python"}


@cache
def _template(mode: str, part: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return (TEMPLATE_DIR / mode / f"{part}.txt").read_text()


def _format_hyperparameters(baseline: Baseline) -> str:
    items = {**baseline.hyperparameters, "batch": baseline.batch, "transform": baseline.transform}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(items.items()))


def render_messages(mode: str, baseline: Baseline, feedback: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for an improvement of `baseline` in `mode`; `feedback` adds a repair request."""
    user = _template(mode, "user").format(
        dataset=baseline.dataset,
        task=baseline.task,
        epoch=baseline.epoch,
        accuracy=f"{baseline.accuracy:.4f}",
        hyperparameters=_format_hyperparameters(baseline),
        code=baseline.code.rstrip("\n"),
    )
    if feedback:
        user += "\n\n" + _template(mode, "feedback").format(feedback=feedback.strip())
    return [{"role": "system", "content": _template(mode, "system").strip()}, {"role": "user", "content": user}]


def render_target(mode: str, body: str) -> str:
    """The assistant answer for training: the diff (delta) or the whole model (full) in a fenced block."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return f"```{_FENCE[mode]}\n{body.rstrip(chr(10))}\n```"
