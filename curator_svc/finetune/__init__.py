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

Modules: config (FineTuneConfig, FineTuneResult), data (examples and batches), model (base model + LoRA),
checkpoint, trainer (the run), cli.
"""

from curator_svc.finetune.checkpoint import CHECKPOINTS_DIR, STATE_FILE, CheckpointMismatch, latest_checkpoint_step
from curator_svc.finetune.config import ENV_PREFIX, FineTuneConfig, FineTuneResult, Progress
from curator_svc.finetune.data import IGNORE_INDEX, encode
from curator_svc.finetune.trainer import RESULT_FILE, finetune

__all__ = [
    "CHECKPOINTS_DIR",
    "ENV_PREFIX",
    "IGNORE_INDEX",
    "RESULT_FILE",
    "STATE_FILE",
    "CheckpointMismatch",
    "FineTuneConfig",
    "FineTuneResult",
    "Progress",
    "encode",
    "finetune",
    "latest_checkpoint_step",
]
