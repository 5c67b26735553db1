"""`python -m curator_svc.finetune DATASET_DIR OUTPUT_DIR [--field value ...] [--resume]`, with a progress bar."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from curator_svc.finetune.checkpoint import latest_checkpoint_step
from curator_svc.finetune.config import ENV_PREFIX, FineTuneConfig
from curator_svc.finetune.trainer import finetune
from deltanas.config import add_config_arguments, config_overrides, load_config
from deltanas.logs import setup_logging


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, FineTuneConfig]:
    """The arguments and the config `main` trains with: flags over DELTANAS_FINETUNE_* variables over a TOML file
    (--config), no progress log lines (the bar replaces them). A checkpoint in OUTPUT_DIR needs --resume and
    --resume needs one (exit 2 otherwise), so that a typo in OUTPUT_DIR never silently restarts or mixes two runs."""
    parser = argparse.ArgumentParser(prog="python -m curator_svc.finetune",
                                     description="LoRA fine-tuning of the code LLM on a curator dataset.")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--config", help="TOML file with FineTuneConfig keys (unknown keys are errors)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of OUTPUT_DIR "
                        "(required when it has one)")
    add_config_arguments(parser, FineTuneConfig)
    args = parser.parse_args(argv)
    overrides = {"log_every_s": math.inf, **config_overrides(args, FineTuneConfig)}
    config = load_config(FineTuneConfig, args.config, ENV_PREFIX, overrides)
    found = latest_checkpoint_step(args.output_dir)
    if found and not args.resume:
        parser.error(f"{args.output_dir} has a checkpoint at step {found}: pass --resume to continue it")
    if args.resume and not found:
        parser.error(f"--resume: {args.output_dir} has no checkpoint")
    return args, config


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    setup_logging()
    args, config = parse(argv)
    with logging_redirect_tqdm(), tqdm(unit="step", dynamic_ncols=True,
                                       initial=latest_checkpoint_step(args.output_dir)) as bar:

        def show(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> None:
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}")

        result = finetune(config, args.dataset_dir, args.output_dir, progress=show)
    print(result)
