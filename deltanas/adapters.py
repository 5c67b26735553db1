"""LoRA adapters that ship inside the deltanas package, verified by sha256 before any use.

Each lives in `deltanas/adapters/<name>/` (adapter_config.json, adapter_model.safetensors, README.md with the
model card). The expected digests are pinned here, in code, not next to the files, so a changed or damaged
file is refused exactly like an unverified base-model blob (deltanas.model_sources). An adapter is named in requests
and configs as `shipped:<name>`:

    >>> path = resolve_adapter("shipped:qwen2.5-coder-0.5b-delta")   # verified directory, or AdapterError
    >>> resolve_adapter("/my/adapter")                               # any other path is returned as given

A fine-tuned adapter becomes a shipped one with `export` (bf16 weights, a neutral base-model id), which prints
the digests to pin in SHIPPED:

    .venv/bin/python -m deltanas.adapters export FINETUNE_OUTPUT_DIR deltanas/adapters/NAME \
        --base-model-id Qwen/Qwen2.5-Coder-0.5B-Instruct --dataset CURATOR_DATASET_DIR
    .venv/bin/python -m deltanas.adapters verify
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from deltanas.model_parts import file_sha256
from deltanas.vocabulary import DEFAULT_MODEL

ADAPTERS_DIR = Path(__file__).with_name("adapters")
PREFIX = "shipped:"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
CARD_FILE = "README.md"
DATASET_FILE = "dataset-manifest.json"


class AdapterError(ValueError):
    """A shipped adapter is unknown, missing, or its files do not have the pinned sha256."""


@dataclass(frozen=True)
class ShippedAdapter:
    name: str
    base_model: str
    mode: str
    sha256: dict[str, str]  # file name -> digest, for CONFIG_FILE and WEIGHTS_FILE

    @property
    def path(self) -> Path:
        return ADAPTERS_DIR / self.name

    @property
    def ref(self) -> str:
        return PREFIX + self.name

    def verified_path(self) -> Path:
        """The adapter's directory after checking every file's sha256; AdapterError naming the file if not."""
        for file, expected in self.sha256.items():
            path = self.path / file
            if not path.is_file():
                raise AdapterError(f"adapter {self.name}: {path} is missing (the package is incomplete)")
            if (actual := file_sha256(path)) != expected:
                raise AdapterError(
                    f"adapter {self.name}: {path} has sha256 {actual}, expected {expected}; refusing to load "
                    "a file that is not the one shipped (reinstall deltanas, or pass your own --adapter-dir)"
                )
        return self.path


SHIPPED: dict[str, ShippedAdapter] = {
    a.name: a
    for a in (
        ShippedAdapter(
            name="qwen2.5-coder-0.5b-delta",
            base_model=DEFAULT_MODEL,
            mode="delta",
            sha256={
                CONFIG_FILE: "a9c00d0aeb1f8d61f76cdf78c32ca5bb26fc30522d8ff76e46d5e24be14914b0",
                WEIGHTS_FILE: "35a04431099bcac75b2ad3a5f3a9db73cebc5169e1bfe9a0c49758ddbbe8b89b",
            },
        ),
    )
}


def default_adapter(base_model: str, mode: str) -> ShippedAdapter | None:
    """The shipped adapter for generating in `mode` with `base_model`, if there is one."""
    return next((a for a in SHIPPED.values() if a.base_model == base_model and a.mode == mode), None)


def adapter_files(directory: str | Path) -> list[Path]:
    """The files of a fine-tuned adapter directory (the adapter, its config, the training result), not its
    checkpoint folders; none when it is not a directory here."""
    if not directory or not Path(directory).is_dir():
        return []
    return sorted(f for f in Path(directory).iterdir() if f.is_file())


def resolve_adapter(path_or_ref: str) -> str:
    """A directory to load: `shipped:<name>` becomes the verified shipped directory; anything else as given."""
    if not path_or_ref.startswith(PREFIX):
        return path_or_ref
    name = path_or_ref.removeprefix(PREFIX)
    if name not in SHIPPED:
        raise AdapterError(f"adapter {path_or_ref!r}: no shipped adapter of that name; shipped: {sorted(SHIPPED)}")
    return str(SHIPPED[name].verified_path())


def export(source: Path, dest: Path, base_model_id: str, dataset_dir: Path) -> dict[str, str]:
    """Copies a peft adapter into `dest` with bf16 weights and `base_model_id` recorded, and its training
    dataset's manifest with every LEMUR model it holds (DATASET_FILE); the sha256 of the adapter's files."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / CONFIG_FILE).read_text())
    config["base_model_name_or_path"] = base_model_id
    (dest / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(source / WEIGHTS_FILE).items()}
    save_file(weights, dest / WEIGHTS_FILE, metadata={"format": "pt"})
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    metas = [json.loads(line)["meta"] for line in (dataset_dir / "train.jsonl").read_text().splitlines()]
    manifest["models"] = sorted({m[side] for m in metas for side in ("baseline", "improved")})
    (dest / DATASET_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return {file: file_sha256(dest / file) for file in (CONFIG_FILE, WEIGHTS_FILE)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deltanas.adapters", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", help="a fine-tuned adapter as a shippable one (bf16), with its sha256")
    out.add_argument("source", type=Path)
    out.add_argument("dest", type=Path)
    out.add_argument("--base-model-id", required=True, help="recorded as base_model_name_or_path")
    out.add_argument("--dataset", type=Path, required=True, help="the curator dataset it was trained on")
    commands.add_parser("verify", help="check every shipped adapter against its pinned sha256")
    args = parser.parse_args(argv)
    if args.command == "export":
        for file, digest in export(args.source, args.dest, args.base_model_id, args.dataset).items():
            print(f"{file}: {digest}")
    else:
        for adapter in SHIPPED.values():
            print(f"{adapter.ref}: ok ({adapter.verified_path()})")


if __name__ == "__main__":
    main()
