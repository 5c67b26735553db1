"""A fine-tune's checkpoints: <output_dir>/checkpoints/step-NNNNNNN/ with the adapter (peft's save_pretrained) and
trainer_state.pt (step, optimizer, scheduler, losses and what the run must match to resume it)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from deltanas.adapters import WEIGHTS_FILE

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
_LEGACY_KEYS = {"r": "lora_r"}  # checkpoint keys written before FineTuneConfig took the proto's names


class CheckpointMismatch(ValueError):
    """A checkpoint in output_dir does not belong to this run's base model, adapter shape or dataset."""


def checkpoints(output_dir: Path) -> list[Path]:
    root = output_dir / CHECKPOINTS_DIR
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def latest_checkpoint_step(output_dir: Path) -> int:
    """The step of the newest checkpoint under output_dir (0: none), i.e. where a resume starts."""
    found = checkpoints(Path(output_dir))
    return int(found[-1].name.removeprefix("step-")) if found else 0


def save(output_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    """Writes the checkpoint of `step` (atomically: a temporary folder renamed into place), then drops older ones.
    `state`: the losses so far and what a resume must match."""
    root = output_dir / CHECKPOINTS_DIR
    final, tmp = root / f"step-{step:07d}", root / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state},
               tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    for old in checkpoints(output_dir):
        if old != final:
            shutil.rmtree(old)
    log.info("checkpoint saved: step %d in %s", step, final)


def _check_resume(state: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    state = {**{new: state[old] for old, new in _LEGACY_KEYS.items() if old in state}, **state}
    for key, value in meta.items():
        if state.get(key) != value:
            raise CheckpointMismatch(
                f"checkpoint {path} was made with {key}={state.get(key)!r}, this run has {key}={value!r}: "
                f"set {key}={state.get(key)!r} to resume it, or use a new output_dir to start over"
            )


def restore(output_dir: Path, model: Any, optimizer: Any, scheduler: Any, meta: dict[str, Any]
            ) -> tuple[int, list[float]]:
    """Loads the newest checkpoint (adapter, optimizer, scheduler) into the run, after checking it matches `meta`;
    its step (0: none) and the losses of the steps before it."""
    found = checkpoints(output_dir)
    if not found:
        return 0, []
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(found[-1] / STATE_FILE, weights_only=True)
    _check_resume(state, meta, found[-1])
    device = next(model.parameters()).device
    set_peft_model_state_dict(model, load_file(found[-1] / WEIGHTS_FILE, device=str(device)))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), [float(x) for x in state.get("losses", [])]
