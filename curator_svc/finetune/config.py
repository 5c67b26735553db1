"""What a fine-tune is given and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from deltanas.config import option
from deltanas.vocabulary import DEFAULT_MODEL

ENV_PREFIX = "DELTANAS_FINETUNE_"
Progress = Callable[[int, int, float, float, float], None]  # step, total, loss, lr, tokens_per_s


@dataclass(frozen=True)
class FineTuneConfig:
    """One LoRA fine-tune; every field is a `--flag` of the command line and a DELTANAS_FINETUNE_ variable, and
    StartFineTuneRequest carries the ones a client may set under the same names."""

    base_model: str = option(DEFAULT_MODEL, "model name or HF directory (deltanas.model_sources)")
    lora_r: int = option(32, "LoRA rank")
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
    gradient_accumulation: int = option(8, "micro-batches per optimizer step")
    max_length: int = option(4096, "longer examples are skipped (counted)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    save_every: int = option(50, "checkpoint every k steps (0: only on cancel)")
    log_every_s: float = option(30.0, "seconds between progress log lines")
    seed: int = option(0, "LoRA init and data order")
    device: str = option("auto", "auto, cpu or cuda")
    load_in_4bit: bool = option(False, "4-bit base weights (CUDA + bitsandbytes)")
    gradient_checkpointing: bool = option(False, "trade compute for activation memory")

    RENAMED: ClassVar[dict[str, str]] = {"r": "lora_r", "grad_accum": "gradient_accumulation"}


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
