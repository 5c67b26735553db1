"""Prompt templates as files, shared by the curator (training data) and the generator (inference).

Training and inference must see byte-identical prompts, so both render through this module:

    >>> msgs = render_messages("delta", baseline)                    # the LEMUR record's accuracy
    >>> msgs = render_messages("delta", baseline, budget=Budget(...), tried=[Tried("-a | +b", "no effect")])
    >>> target = render_target("delta", diff_text)                   # what the assistant should answer

A prompt states the model's situation: the accuracy LEMUR recorded (under LEMUR's own budget), or, when the caller
measured it, the `Budget` facts (accuracy and seed spread under the search's budget, parameters, training time).
`tried` lists changes already evaluated on this model and what came of them, so the LLM does not repeat them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from deltanas.baseline import Baseline, Budget
from deltanas.vocabulary import MODES

TEMPLATE_DIR = Path(__file__).with_name("prompt_templates")
COMMON = "common"  # the parts both modes share
_FENCE = {"delta": "diff", "full": "python"}


@dataclass(frozen=True)
class Tried:
    """A change already evaluated on the model (deltadiff.change_summary) and what came of it, in words."""

    change: str
    outcome: str


@cache
def _template(mode: str, part: str) -> str:
    if mode not in (*MODES, COMMON):
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return (TEMPLATE_DIR / mode / f"{part}.txt").read_text()


def _format_hyperparameters(baseline: Baseline) -> str:
    items = {**baseline.hyperparameters, "batch": baseline.batch, "transform": baseline.transform}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(items.items()))


def _situation(baseline: Baseline, budget: Budget | None) -> str:
    facts = {"task": baseline.task, "dataset": baseline.dataset, "epoch": baseline.epoch,
             "hyperparameters": _format_hyperparameters(baseline)}
    if budget is None:
        return _template(COMMON, "record").format(accuracy=f"{baseline.accuracy:.4f}", **facts).rstrip("\n")
    return _template(COMMON, "budget").format(
        accuracy=f"{budget.accuracy:.4f}", spread=f"{budget.spread:.4f}", seeds=budget.seeds,
        train_images=budget.train_images, num_params=f"{budget.num_params:,}",
        train_seconds=f"{budget.train_seconds:.1f}", **facts).rstrip("\n")


def render_messages(mode: str, baseline: Baseline, feedback: str | None = None, budget: Budget | None = None,
                    tried: Sequence[Tried] = ()) -> list[dict[str, str]]:
    """Chat messages asking for an improvement of `baseline` in `mode`; `budget` states what was measured of it,
    `tried` what was already tried on it, `feedback` adds a repair request."""
    user = _template(mode, "user").format(situation=_situation(baseline, budget), epoch=baseline.epoch,
                                          code=baseline.code.rstrip("\n"))
    if tried:
        items = "\n".join(f"- {t.change}: {t.outcome}" for t in tried)
        user = user.rstrip("\n") + "\n\n" + _template(COMMON, "tried").format(items=items).rstrip("\n")
    if feedback:
        user += "\n\n" + _template(mode, "feedback").format(feedback=feedback.strip())
    return [{"role": "system", "content": _template(mode, "system").strip()}, {"role": "user", "content": user}]


def render_target(mode: str, body: str) -> str:
    """The assistant answer for training: the diff (delta) or the whole model (full) in a fenced block."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return f"```{_FENCE[mode]}\n{body.rstrip(chr(10))}\n```"
