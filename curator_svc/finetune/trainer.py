"""The training run: a Trainer holds one fine-tune's model, optimizer, scheduler and examples, resumes the newest
checkpoint, steps until the end (or a cancel) and writes the adapter and the result file."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from curator_svc.finetune import checkpoint
from curator_svc.finetune.config import FineTuneConfig, FineTuneResult, Progress
from curator_svc.finetune.data import IGNORE_INDEX, batches, collate, load_examples
from curator_svc.finetune.model import load_lora_model
from deltanas.vocabulary import resolve_device

log = logging.getLogger(__name__)

RESULT_FILE = "finetune_result.json"


def train_step(model: Any, micro: list[dict[str, torch.Tensor]], params: list[torch.Tensor],
               optimizer: torch.optim.Optimizer, max_grad_norm: float) -> tuple[float, float]:
    """One optimizer step over the micro-batches: (mean loss over all completion tokens, optimizer seconds)."""
    n_targets = max(1, sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro))
    total = 0.0
    for batch in micro:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = (
            torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                batch["labels"][:, 1:].flatten(),
                reduction="sum",
                ignore_index=IGNORE_INDEX,
            )
            / n_targets
        )
        loss.backward()
        total += loss.item()
    started = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, time.perf_counter() - started


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ProgressLog:
    """A log line every `every_s` seconds (and at the first and last step) with rates since the previous line."""

    def __init__(self, label: str, total: int, start_step: int, every_s: float) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.start_step, self.started = start_step, time.perf_counter()
        self.last_step, self.last_time, self.tokens = start_step, self.started, 0

    def __call__(self, step: int, loss: float, lr: float, tokens: int) -> None:
        now = time.perf_counter()
        self.tokens += tokens
        if not (step == self.start_step + 1 or step == self.total or now - self.last_time >= self.every_s):
            return
        interval = max(now - self.last_time, 1e-9)
        per_step = (now - self.started) / (step - self.start_step)
        log.info(
            "fine-tune %s: step %d/%d (%.0f%%) loss %.4f lr %.2e %.0f tok/s %.1f steps/min ETA %s",
            self.label,
            step,
            self.total,
            100 * step / self.total,
            loss,
            lr,
            self.tokens / interval,
            60 * (step - self.last_step) / interval,
            _duration((self.total - step) * per_step),
        )
        self.last_step, self.last_time, self.tokens = step, now, 0


class Trainer:
    """One fine-tune of `config` on <dataset_dir>/train.jsonl into `output_dir`, resumed from its newest checkpoint.

    The micro-batches of a step are a function of (seed, step), so a resume needs no data state.
    """

    def __init__(self, config: FineTuneConfig, dataset_dir: Path, output_dir: Path, label: str) -> None:
        from transformers import get_cosine_schedule_with_warmup

        self.config, self.output_dir, self.label = config, output_dir, label
        self.data = load_examples(config, dataset_dir)
        self.model = load_lora_model(config, torch.device(resolve_device(config.device)))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, round(config.warmup_ratio * self.data.total),
                                                         self.data.total)
        self.step, self.losses = checkpoint.restore(output_dir, self.model, self.optimizer, self.scheduler,
                                                    self.data.meta)  # losses: per step, from step 1
        self.resumed_from = self.last_saved = self.step
        self.loss, self.tokens, self.train_s, self.optimizer_s = float("nan"), 0, 0.0, 0.0
        self.cancelled = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _save(self) -> None:
        checkpoint.save(self.output_dir, self.step, self.model, self.optimizer, self.scheduler,
                        {"losses": self.losses, **self.data.meta})
        self.last_saved = self.step

    def run(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> None:
        """Optimizer steps until the total (or `cancel`), a checkpoint every save_every steps and on cancel."""
        config, data = self.config, self.data
        progress_log = ProgressLog(self.label, data.total, self.step, config.log_every_s)
        while self.step < data.total:
            if cancel is not None and cancel.is_set():
                self.cancelled = True
                break
            started = time.perf_counter()
            micro = [collate([data.examples[i] for i in batch], data.pad_id, self.device)
                     for batch in batches(len(data.examples), config, self.step)]
            self.loss, optimizer_s = train_step(self.model, micro, self.params, self.optimizer, config.max_grad_norm)
            self.scheduler.step()
            self.step += 1
            elapsed = time.perf_counter() - started
            step_tokens = sum(int(b["attention_mask"].sum()) for b in micro)
            self.tokens, self.train_s, self.optimizer_s = self.tokens + step_tokens, self.train_s + elapsed, \
                self.optimizer_s + optimizer_s
            self.losses.append(self.loss)
            lr = self.scheduler.get_last_lr()[0]
            progress_log(self.step, self.loss, lr, step_tokens)
            if progress is not None:
                progress(self.step, data.total, self.loss, lr, step_tokens / elapsed)
            if config.save_every and self.step % config.save_every == 0 and self.step < data.total:
                self._save()
        if self.cancelled and self.step > self.last_saved:
            self._save()

    def finish(self, started: float) -> FineTuneResult:
        """The final adapter (unless cancelled) and the result file."""
        adapter_dir = None
        if not self.cancelled:
            self.model.save_pretrained(self.output_dir)
            adapter_dir = str(self.output_dir)
        result = FineTuneResult(
            adapter_dir=adapter_dir,
            steps=self.step,
            total_steps=self.data.total,
            final_loss=self.loss,
            tokens_per_s=self.tokens / self.train_s if self.train_s else 0.0,
            seconds=time.perf_counter() - started,
            cancelled=self.cancelled,
            resumed_from=self.resumed_from,
            skipped_too_long=self.data.skipped,
            optimizer_s=self.optimizer_s / max(1, self.step - self.resumed_from),
        )
        if not self.cancelled:
            (self.output_dir / RESULT_FILE).write_text(
                json.dumps({**asdict(result), "config": asdict(self.config), "losses": self.losses}, indent=2)
            )
        return result


def finetune(
    config: FineTuneConfig,
    dataset_dir: Path,
    output_dir: Path,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    label: str = "",
) -> FineTuneResult:
    """Train a LoRA adapter on <dataset_dir>/train.jsonl into output_dir, resuming its latest checkpoint.

    `label` names the run in log lines (default: the output directory's name).
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    label = label or output_dir.name
    trainer = Trainer(config, dataset_dir, output_dir, label)
    data = trainer.data
    if trainer.step:
        log.info("fine-tune %s: resuming at step %d/%d", label, trainer.step, data.total)
    log.info(
        "fine-tune %s: %s on %s: %d examples (%d too long), %d steps on %s, %d trainable parameters",
        label,
        config.base_model,
        dataset_dir,
        len(data.examples),
        data.skipped,
        data.total,
        trainer.device,
        sum(p.numel() for p in trainer.params),
    )
    trainer.run(progress, cancel)
    result = trainer.finish(started)
    log.info("fine-tune %s: %s %s", label, "cancelled" if trainer.cancelled else "done", result)
    return result
