"""LoRA adapters for the local backend, checked before they touch the model and loaded so that a failure leaves
the model computing exactly as before.

    config = read_adapter(name, path)               # BackendError naming the file unless config and weights are sound
    model = load_adapter(model, base, name, path, config)   # the PeftModel to use; on failure, BackendError and
                                                            # `base` (and the adapters loaded before) as they were

peft injects an adapter's layers into the base model before it loads the weights, so a corrupt weights file used to
leave half-loaded layers active for every later request. Here the weights are read and checked first (a safetensors
file of finite floating-point tensors), and a load that fails anyway is undone: the failed adapter deleted, or, for
the first adapter, every layer peft wrapped put back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deltanas.adapters import CONFIG_FILE, WEIGHTS_FILE
from generator_svc.backends.base import BackendError


def read_adapter(name: str, path: str) -> Any:
    """The adapter's PeftConfig, after checking that its weights file is sound; BackendError naming the file."""
    from peft import PeftConfig, PeftType
    from safetensors.torch import load_file

    refused = f"cannot load adapter {name!r} from {path}:"
    try:
        config = PeftConfig.from_pretrained(path)
    except Exception as exc:  # malformed JSON, unknown keys, wrong types: peft and dataclasses raise many kinds
        raise BackendError(f"{refused} {Path(path) / CONFIG_FILE} is not a peft adapter config "
                           f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    if config.peft_type != PeftType.LORA:
        raise BackendError(f"{refused} a LoRA adapter is expected, not {config.peft_type}")
    weights_file = Path(path) / WEIGHTS_FILE
    if not weights_file.is_file():
        raise BackendError(f"{refused} {weights_file} is missing (the weights must be safetensors)")
    try:
        weights = load_file(weights_file)
    except Exception as exc:  # truncated or forged header: safetensors raises its own errors
        raise BackendError(f"{refused} {weights_file} is not a readable safetensors file ({type(exc).__name__}: "
                           f"{str(exc)[:200]})") from exc
    bad = [key for key, tensor in weights.items() if not tensor.is_floating_point() or not torch.isfinite(tensor).all()]
    if bad:
        raise BackendError(f"{refused} {weights_file} holds non-finite or non-float tensors: {', '.join(bad[:5])}")
    if not weights:
        raise BackendError(f"{refused} {weights_file} holds no tensor")
    return config


def strip_adapters(model: torch.nn.Module) -> None:
    """Puts every module peft wrapped back to the layer it wraps, and drops the adapter configs peft attached:
    `model` computes, and lists adapters, as it was loaded."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attribute, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config


def load_adapter(model: Any, base: torch.nn.Module, name: str, path: str, config: Any) -> Any:
    """`model` (`base` itself before the first adapter) with adapter `name` from `path` loaded (replacing one of that
    name); BackendError, with `base` and the adapters loaded before untouched, when that fails."""
    from peft import get_peft_model

    config.inference_mode = True
    created = model is base
    try:
        if created:
            model = get_peft_model(base, config, adapter_name=name)
        elif name in model.peft_config:
            model.delete_adapter(name)
        model.load_adapter(path, adapter_name=name)
    except Exception as exc:  # shapes that do not fit the base, a base without the target modules, ...
        if created:
            strip_adapters(base)
        elif name in model.peft_config:
            model.delete_adapter(name)
        raise BackendError(f"cannot load adapter {name!r} from {path}: {type(exc).__name__}: {str(exc)[:300]}") \
            from exc
    return model.eval()
