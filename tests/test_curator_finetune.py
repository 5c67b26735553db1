"""curator_svc.finetune: a few CPU LoRA steps of SmolLM2-135M on a tiny dataset; masking, cancel, resume.

.venv/bin/pytest tests/test_curator_finetune.py
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from curator_svc.dataset import TRAIN_FILE
from curator_svc.finetune import (
    CHECKPOINTS_DIR,
    IGNORE_INDEX,
    RESULT_FILE,
    CheckpointMismatch,
    FineTuneConfig,
    encode,
    finetune,
)
from deltanas import model_sources
from tests.support import TEST_MODEL

pytestmark = pytest.mark.usefixtures("deltanas_home")
MODEL = TEST_MODEL
CONFIG = FineTuneConfig(
    base_model=MODEL,
    lora_r=4,
    lora_alpha=8,
    target_modules=("q_proj", "v_proj"),
    max_steps=2,
    batch_size=1,
    gradient_accumulation=1,
    learning_rate=1e-3,
    save_every=1,
    device="cpu",
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataset")
    records = [
        {
            "messages": [{"role": "user", "content": f"Widen layer {i}."}],
            "target": f"```diff\n-x = {i}\n+x = {2 * i}\n```",
        }
        for i in range(4)
    ]
    (path / TRAIN_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_labels_mask_the_prompt(dataset_dir: Path) -> None:
    tokenizer = model_sources.load_tokenizer(MODEL)
    record = json.loads((dataset_dir / TRAIN_FILE).read_text().splitlines()[0])
    ids, labels = encode(tokenizer, record)
    prompt = tokenizer.apply_chat_template(record["messages"], add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n_prompt:]).startswith("```diff")


def test_cancel_resume_and_final_adapter(dataset_dir: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    first = finetune(CONFIG, dataset_dir, tmp_path, progress=lambda *_: cancel.set(), cancel=cancel)
    assert (
        first.cancelled and first.steps == 1 and first.adapter_dir is None and math.isfinite(first.final_loss)
    )
    assert [p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir()] == ["step-0000001"]
    assert not (tmp_path / "adapter_model.safetensors").exists()

    other_model = FineTuneConfig(**{**CONFIG.__dict__, "base_model": "qwen2.5-coder-0.5b"})
    with pytest.raises(CheckpointMismatch, match="base_model='smollm2-135m'"):
        finetune(other_model, dataset_dir, tmp_path)

    seen = []
    second = finetune(CONFIG, dataset_dir, tmp_path, progress=lambda *args: seen.append(args))
    assert second.resumed_from == 1 and not second.cancelled and second.steps == second.total_steps == 2
    assert [s[:2] for s in seen] == [(2, 2)]
    losses = json.loads((tmp_path / RESULT_FILE).read_text())["losses"]
    assert len(losses) == 2 and losses[0] == first.final_loss  # the curve survives the resume
    assert all(math.isfinite(s[2]) and s[3] >= 0 and s[4] > 0 for s in seen)
    adapter = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)


def test_adapter_loads_as_is_in_peft_tgi_and_vllm(dataset_dir: Path, tmp_path: Path) -> None:
    """adapter_config.json has what TGI (LORA_ADAPTERS) and vLLM (--lora-modules) read; peft loads it as is."""
    from peft import PeftModel

    result = finetune(replace(CONFIG, save_every=0), dataset_dir, tmp_path)
    assert result.adapter_dir == str(tmp_path) and result.optimizer_s > 0
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"]) == (4, 8) and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert config["base_model_name_or_path"] == str(model_sources.model_dir(MODEL))
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert all(n.startswith("base_model.model.") and n.endswith((".lora_A.weight", ".lora_B.weight")) for n in weights)

    tokenizer = model_sources.load_tokenizer(MODEL)
    ids = torch.tensor([tokenizer("class Net(nn.Module):")["input_ids"]])
    base = model_sources.load_model(MODEL)
    with torch.no_grad():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, tmp_path).eval()
        after = tuned(input_ids=ids).logits
    assert after.shape == before.shape and not torch.allclose(before, after)


def test_command_line_resumes_only_when_asked(dataset_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """`python -m curator_svc.finetune`: a checkpoint in OUTPUT_DIR needs --resume, --resume needs one; flags over
    DELTANAS_FINETUNE_* variables over a TOML file (unknown keys are errors, moved ones name the new key); the bar
    replaces the log lines. `parse` is what `main` trains with."""
    from curator_svc.finetune import STATE_FILE
    from curator_svc.finetune.cli import main, parse
    from deltanas.config import ConfigError

    (tmp_path / CHECKPOINTS_DIR / "step-0000003").mkdir(parents=True)
    (tmp_path / CHECKPOINTS_DIR / "step-0000003" / STATE_FILE).write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main([str(dataset_dir), str(tmp_path)])
    assert exit_.value.code == 2 and "checkpoint at step 3: pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(dataset_dir), str(tmp_path / "fresh"), "--resume"])
    assert "--resume: " in (err := capsys.readouterr().err) and "has no checkpoint" in err

    (tmp_path / "ft.toml").write_text("learning_rate = 1e-3\nlora_alpha = 4\n")
    monkeypatch.setenv("DELTANAS_FINETUNE_LEARNING_RATE", "3e-4")
    args, config = parse([str(dataset_dir), str(tmp_path), "--resume", "--config", str(tmp_path / "ft.toml"),
                          "--target-modules", "q_proj,v_proj", "--lora-r", "8", "--no-load-in-4bit"])
    assert args.resume and (config.target_modules, config.lora_r, config.learning_rate, config.lora_alpha) == (
        ("q_proj", "v_proj"), 8, 3e-4, 4)
    assert not config.load_in_4bit and config.log_every_s == math.inf
    with pytest.raises(ConfigError, match=r"command line: --r was moved: use --lora-r"):
        parse([str(dataset_dir), str(tmp_path / "new"), "--r", "8"])
    (tmp_path / "ft.toml").write_text("grad_accum = 8\n")
    with pytest.raises(ConfigError, match=r"ft.toml: grad_accum was moved: use gradient_accumulation"):
        parse([str(dataset_dir), str(tmp_path / "new"), "--config", str(tmp_path / "ft.toml")])
    (tmp_path / "ft.toml").write_text("lora_rank = 8\n")
    with pytest.raises(ConfigError, match="unknown key"):
        parse([str(dataset_dir), str(tmp_path / "new"), "--config", str(tmp_path / "ft.toml")])
