"""The model a fine-tune trains: the base model (bf16 on CUDA, optionally 4-bit; fp32 on CPU) with LoRA layers."""

from __future__ import annotations

from typing import Any

import torch

from curator_svc.finetune.config import FineTuneConfig
from deltanas import model_sources


def _base_model(config: FineTuneConfig, device: torch.device) -> Any:
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
            model_sources.model_dir(config.base_model), quantization_config=quant, device_map={"": device.index or 0}
        )
        return prepare_model_for_kbit_training(model, config.gradient_checkpointing)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = model_sources.load_model(config.base_model, dtype=dtype, device=str(device))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    return model


def load_lora_model(config: FineTuneConfig, device: torch.device) -> Any:
    """The base model with fresh LoRA layers (seeded with config.seed), in train mode."""
    from peft import LoraConfig, get_peft_model

    model = _base_model(config, device)
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    model = get_peft_model(model, lora)
    model.train()
    return model
