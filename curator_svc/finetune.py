"""LoRA fine-tuning of the code LLM on a dataset written by curator_svc.dataset (plain PyTorch loop).

Loss is on the completion only (target + end-of-turn; prompt tokens are labelled -100), token-weighted
across gradient-accumulation micro-batches; AdamW with cosine schedule and warm-up; bf16 on CUDA
(optionally 4-bit base weights via bitsandbytes), fp32 on CPU. Every `save_every` steps a checkpoint
(adapter + optimizer/scheduler state + step) is written under <output_dir>/checkpoints/; a rerun with the
same output_dir resumes from the latest one (adapter, optimizer, scheduler and step; the data order is a
function of seed and step). The final adapter is saved with `save_pretrained` in
<output_dir> (adapter_config.json + adapter_model.safetensors), loadable as-is by peft, TGI and vLLM.
Progress goes to the log every `log_every_s` (step/total, loss, lr, tokens/s, steps/min, ETA); the command
line shows a progress bar instead.

    .venv/bin/python -m curator_svc.finetune DATASET_DIR OUTPUT_DIR --base-model smollm2-135m --max-steps 5
    .venv/bin/python -m curator_svc.finetune DATASET_DIR OUTPUT_DIR --base-model smollm2-135m --resume

Flags, a TOML file (--config) and DELTANAS_FINETUNE_<FIELD> variables set FineTuneConfig (deltanas.config).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from curator_svc.dataset import TRAIN_FILE, completion_text, prompt_text
from deltanas import model_sources
from deltanas.config import option
from deltanas.logs import setup_logging
from deltanas.vocabulary import DEFAULT_MODEL, resolve_device

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
ENV_PREFIX = "DELTANAS_FINETUNE_"
RESULT_FILE = "finetune_result.json"
IGNORE_INDEX = -100
Progress = Callable[[int, int, float, float, float], None]  # step, total, loss, lr, tokens_per_s
_LORA_FIELDS = ("r", "lora_alpha", "target_modules")


@dataclass(frozen=True)
class FineTuneConfig:
    """One LoRA fine-tune; every field is a `--flag` of the command line and a DELTANAS_FINETUNE_ variable."""

    base_model: str = option(DEFAULT_MODEL, "model name or HF directory (deltanas.model_sources)")
    r: int = option(32, "LoRA rank")
    lora_alpha: int = option(32, "LoRA scaling alpha")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    target_modules: tuple[str, ...] = option(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        "linear layers that get LoRA adapters (comma-separated)",
    )
    learning_rate: float = option(2e-4, "peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.03, "share of steps with linear warm-up")
    epochs: int = option(1, "passes over the training set (if max_steps is 0)")
    max_steps: int = option(0, "optimizer steps; 0: epochs x steps per epoch")
    batch_size: int = option(1, "examples per micro-batch")
    grad_accum: int = option(8, "micro-batches per optimizer step")
    max_length: int = option(4096, "longer examples are skipped (counted)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    save_every: int = option(50, "checkpoint every k steps (0: only on cancel)")
    log_every_s: float = option(30.0, "seconds between progress log lines")
    seed: int = option(0, "LoRA init and data order")
    device: str = option("auto", "auto, cpu or cuda")
    load_in_4bit: bool = option(False, "4-bit base weights (CUDA + bitsandbytes)")
    gradient_checkpointing: bool = option(False, "trade compute for activation memory")


@dataclass(frozen=True)
class FineTuneResult:
    adapter_dir: str | None  # None when cancelled before the end
    steps: int
    total_steps: int
    final_loss: float
    tokens_per_s: float
    seconds: float
    cancelled: bool
    resumed_from: int
    skipped_too_long: int
    optimizer_s: float  # mean seconds of gradient clipping + optimizer step per step


class CheckpointMismatch(ValueError):
    """A checkpoint in output_dir does not belong to this run's base model, adapter shape or dataset."""


def encode(tokenizer: Any, record: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one dataset record; labels are IGNORE_INDEX on the prompt."""
    prompt = tokenizer(prompt_text(tokenizer, record["messages"]), add_special_tokens=False)["input_ids"]
    completion = tokenizer(completion_text(tokenizer, record["target"]), add_special_tokens=False)[
        "input_ids"
    ]
    return prompt + completion, [IGNORE_INDEX] * len(prompt) + completion


def _device(config: FineTuneConfig) -> torch.device:
    return torch.device(resolve_device(config.device))


def _load_model(config: FineTuneConfig, device: torch.device) -> Any:
    from peft import LoraConfig, get_peft_model

    if config.load_in_4bit:
        from importlib.util import find_spec

        if device.type != "cuda" or find_spec("bitsandbytes") is None:
            raise ValueError(
                "load_in_4bit needs CUDA and bitsandbytes (pip install bitsandbytes); "
                "set load_in_4bit=False to train in bf16/fp32"
            )
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        model = AutoModelForCausalLM.from_pretrained(
            model_sources.resolve(config.base_model), quantization_config=quant, device_map={"": device.index or 0}
        )
        model = prepare_model_for_kbit_training(model, config.gradient_checkpointing)
    else:
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        model = model_sources.load_model(config.base_model, dtype=dtype, device=str(device))
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    model = get_peft_model(model, lora)
    model.train()
    return model


def _checkpoints(output_dir: Path) -> list[Path]:
    root = output_dir / CHECKPOINTS_DIR
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def _save_checkpoint(
    model: Any, optimizer: Any, scheduler: Any, step: int, meta: dict[str, Any], output_dir: Path,
    losses: list[float],
) -> None:
    root = output_dir / CHECKPOINTS_DIR
    final, tmp = root / f"step-{step:07d}", root / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(
        {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "losses": losses,
         **meta},
        tmp / STATE_FILE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    for old in _checkpoints(output_dir):
        if old != final:
            shutil.rmtree(old)
    log.info("checkpoint saved: step %d in %s", step, final)


def _check_resume(state: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    for key, value in meta.items():
        if state.get(key) != value:
            what = "base_model" if key == "base_model" else key
            raise CheckpointMismatch(
                f"checkpoint {path} was made with {key}={state.get(key)!r}, this run has {key}={value!r}: "
                f"set {what}={state.get(key)!r} to resume it, or use a new output_dir to start over"
            )


def _batches(n: int, config: FineTuneConfig, step: int) -> list[list[int]]:
    """Example indices of the micro-batches of optimizer step `step` (a seeded permutation per epoch)."""
    per_step = config.batch_size * config.grad_accum
    positions = range(step * per_step, (step + 1) * per_step)
    orders: dict[int, list[int]] = {}
    indices = []
    for pos in positions:
        epoch = pos // n
        if epoch not in orders:
            orders[epoch] = torch.randperm(
                n, generator=torch.Generator().manual_seed(config.seed + epoch)
            ).tolist()
        indices.append(orders[epoch][pos % n])
    return [indices[i : i + config.batch_size] for i in range(0, per_step, config.batch_size)]


def _collate(
    examples: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def _train_step(
    model: Any,
    micro: list[dict[str, torch.Tensor]],
    params: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
) -> tuple[float, float]:
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


class _ProgressLog:
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


@dataclass
class _Examples:
    """Phase 1 of a fine-tune: the tokenized examples that fit, and what a checkpoint must match."""

    examples: list[tuple[list[int], list[int]]]
    skipped: int
    meta: dict[str, Any]
    pad_id: int
    total: int


@dataclass
class _Loop:
    """Counters of the training loop (phase 3)."""

    step: int
    resumed_from: int
    last_saved: int
    loss: float = float("nan")
    tokens: int = 0
    train_s: float = 0.0
    optimizer_s: float = 0.0
    cancelled: bool = False
    losses: list[float] = field(default_factory=list)  # per step, from step 1 (kept across resumes)


def _load_examples(config: FineTuneConfig, dataset_dir: Path) -> _Examples:
    train_bytes = (Path(dataset_dir) / TRAIN_FILE).read_bytes()
    records = [json.loads(line) for line in train_bytes.splitlines() if line.strip()]
    meta = {
        "base_model": config.base_model,
        **{k: getattr(config, k) for k in _LORA_FIELDS},
        "dataset_sha256": hashlib.sha256(train_bytes).hexdigest(),
    }
    tokenizer = model_sources.load_tokenizer(config.base_model)
    encoded = [encode(tokenizer, r) for r in records]
    examples = [e for e in encoded if len(e[0]) <= config.max_length]
    if not examples:
        raise ValueError(
            f"no training example of {dataset_dir} fits max_length={config.max_length} "
            f"({len(encoded)} examples)"
        )
    steps_per_epoch = math.ceil(len(examples) / (config.batch_size * config.grad_accum))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _Examples(
        examples,
        len(encoded) - len(examples),
        meta,
        pad_id,
        config.max_steps or config.epochs * steps_per_epoch,
    )


def latest_checkpoint_step(output_dir: Path) -> int:
    """The step of the newest checkpoint under output_dir (0: none), i.e. where a resume starts."""
    checkpoints = _checkpoints(Path(output_dir))
    return int(checkpoints[-1].name.removeprefix("step-")) if checkpoints else 0


def _restore(
    model: Any, optimizer: Any, scheduler: Any, output_dir: Path, meta: dict[str, Any]
) -> tuple[int, list[float]]:
    """Phase 2: loads the newest checkpoint (adapter, optimizer, scheduler) into the run; its step (0: none)
    and the losses of the steps before it.

    The data order needs no state: the micro-batches of a step are a function of (seed, step) (`_batches`).
    """
    checkpoints = _checkpoints(output_dir)
    if not checkpoints:
        return 0, []
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(checkpoints[-1] / STATE_FILE, weights_only=True)
    _check_resume(state, meta, checkpoints[-1])
    device = next(model.parameters()).device
    set_peft_model_state_dict(model, load_file(checkpoints[-1] / ADAPTER_WEIGHTS, device=str(device)))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), [float(x) for x in state.get("losses", [])]


def _train_loop(
    config: FineTuneConfig,
    data: _Examples,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    loop: _Loop,
    output_dir: Path,
    progress: Progress | None,
    cancel: threading.Event | None,
    label: str,
) -> None:
    """Phase 3: optimizer steps until total (or cancel), checkpointing every save_every steps."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    progress_log = _ProgressLog(label, data.total, loop.step, config.log_every_s)
    while loop.step < data.total:
        if cancel is not None and cancel.is_set():
            loop.cancelled = True
            break
        started = time.perf_counter()
        micro = [
            _collate([data.examples[i] for i in batch], data.pad_id, device)
            for batch in _batches(len(data.examples), config, loop.step)
        ]
        step_loss, step_optimizer = _train_step(model, micro, params, optimizer, config.max_grad_norm)
        scheduler.step()
        loop.step += 1
        elapsed = time.perf_counter() - started
        step_tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        loop.tokens, loop.train_s, loop.loss = loop.tokens + step_tokens, loop.train_s + elapsed, step_loss
        loop.losses.append(step_loss)
        loop.optimizer_s += step_optimizer
        lr = scheduler.get_last_lr()[0]
        progress_log(loop.step, loop.loss, lr, step_tokens)
        if progress is not None:
            progress(loop.step, data.total, loop.loss, lr, step_tokens / elapsed)
        if config.save_every and loop.step % config.save_every == 0 and loop.step < data.total:
            _save_checkpoint(model, optimizer, scheduler, loop.step, data.meta, output_dir, loop.losses)
            loop.last_saved = loop.step
    if loop.cancelled and loop.step > loop.last_saved:
        _save_checkpoint(model, optimizer, scheduler, loop.step, data.meta, output_dir, loop.losses)


def _finish(
    config: FineTuneConfig, data: _Examples, model: Any, loop: _Loop, output_dir: Path, t0: float
) -> FineTuneResult:
    """Phase 4: the final adapter (unless cancelled) and the result file."""
    adapter_dir = None
    if not loop.cancelled:
        model.save_pretrained(output_dir)
        adapter_dir = str(output_dir)
    result = FineTuneResult(
        adapter_dir=adapter_dir,
        steps=loop.step,
        total_steps=data.total,
        final_loss=loop.loss,
        tokens_per_s=loop.tokens / loop.train_s if loop.train_s else 0.0,
        seconds=time.perf_counter() - t0,
        cancelled=loop.cancelled,
        resumed_from=loop.resumed_from,
        skipped_too_long=data.skipped,
        optimizer_s=loop.optimizer_s / max(1, loop.step - loop.resumed_from),
    )
    if not loop.cancelled:
        (output_dir / RESULT_FILE).write_text(
            json.dumps({**asdict(result), "config": asdict(config), "losses": loop.losses}, indent=2)
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
    from transformers import get_cosine_schedule_with_warmup

    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    label = label or output_dir.name
    data = _load_examples(config, dataset_dir)
    model = _load_model(config, _device(config))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(config.warmup_ratio * data.total), data.total)
    step, losses = _restore(model, optimizer, scheduler, output_dir, data.meta)
    if step:
        log.info("fine-tune %s: resuming at step %d/%d", label, step, data.total)
    log.info(
        "fine-tune %s: %s on %s: %d examples (%d too long), %d steps on %s, %d trainable parameters",
        label,
        config.base_model,
        dataset_dir,
        len(data.examples),
        data.skipped,
        data.total,
        next(model.parameters()).device,
        sum(p.numel() for p in params),
    )
    loop = _Loop(step=step, resumed_from=step, last_saved=step, losses=losses)
    _train_loop(config, data, model, optimizer, scheduler, loop, output_dir, progress, cancel, label)
    result = _finish(config, data, model, loop, output_dir, t0)
    log.info("fine-tune %s: %s %s", label, "cancelled" if loop.cancelled else "done", result)
    return result


def main(argv: list[str] | None = None) -> None:
    """`python -m curator_svc.finetune DATASET_DIR OUTPUT_DIR [--field value ...] [--resume]`."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from deltanas.config import add_config_arguments, config_overrides, load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--config", help="TOML file with FineTuneConfig keys (unknown keys are errors)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint of OUTPUT_DIR (required "
        "when it has one, so that a typo in OUTPUT_DIR never silently restarts or mixes two runs)"
    )
    add_config_arguments(parser, FineTuneConfig)
    args = parser.parse_args(argv)
    setup_logging()
    overrides = {"log_every_s": math.inf, **config_overrides(args, FineTuneConfig)}  # the bar replaces them
    config = load_config(FineTuneConfig, args.config, ENV_PREFIX, overrides)
    found = latest_checkpoint_step(args.output_dir)
    if found and not args.resume:
        parser.error(f"{args.output_dir} has a checkpoint at step {found}: pass --resume to continue it")
    if args.resume and not found:
        parser.error(f"--resume: {args.output_dir} has no checkpoint")
    with logging_redirect_tqdm(), tqdm(unit="step", dynamic_ncols=True, initial=found) as bar:

        def show(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> None:
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}")

        result = finetune(config, args.dataset_dir, args.output_dir, progress=show)
    print(result)


if __name__ == "__main__":
    main()
