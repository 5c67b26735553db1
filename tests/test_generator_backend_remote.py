"""The TGI and OpenAI-compatible backends against small fake servers on loopback (the wire shapes they use).

.venv/bin/python -m pytest tests/test_generator_backend_remote.py
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from deltanas import llm
from generator_svc.backends import (
    BackendError,
    BackendUnavailable,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
    backend_options,
    create_backend,
)

MESSAGES = [{"role": "user", "content": "Improve this model."}]
CONTEXT = 4096


class FakeServer(BaseHTTPRequestHandler):
    """Answers like vLLM (/v1/...) and TGI (/info, /generate); echoes seed and model so tests can check them."""

    adapters: ClassVar[dict[str, str]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            lora = [{"id": name, "parent": "base"} for name in self.adapters]
            self._reply({"data": [{"id": "base", "parent": None, "max_model_len": CONTEXT}, *lora]})
        elif self.path == "/info":
            self._reply({"model_id": "base", "max_total_tokens": CONTEXT})
        else:
            self._reply({"error": "not found"}, 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/load_lora_adapter":
            self.adapters[body["lora_name"]] = body["lora_path"]
            self._reply(None)
        elif self.path == "/tokenize":
            self._reply({"count": 20, "max_model_len": CONTEXT})
        elif self.path == "/v1/chat/completions":
            text = f"model={body['model']} seed={body['seed']}"
            usage = {"prompt_tokens": 20, "completion_tokens": 5}
            self._reply({"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": usage})
        elif self.path in ("/", "/generate"):
            params = body["parameters"]
            text = f"adapter={params.get('adapter_id')} seed={params['seed']}"
            details = {
                "finish_reason": "eos_token",
                "generated_tokens": 5,
                "seed": params["seed"],
                "prefill": [],
                "tokens": [],
            }
            self._reply([{"generated_text": text, "details": details}])
        else:
            self._reply({"error": "not found"}, 404)


@pytest.fixture()
def server() -> Iterator[str]:
    FakeServer.adapters = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_adapters_seeds_and_errors(server: str) -> None:
    backend = create_backend("openai", url=server, concurrency=2)
    assert backend.info().model == "base" and backend.info().context_length == CONTEXT
    with pytest.raises(UnknownAdapter):
        backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter="cycle1", seeds=[0])
    backend.load_adapter("cycle1", "/adapters/cycle1")
    assert backend.list_adapters() == ["cycle1"]
    gens = sorted(
        backend.generate(MESSAGES, n=3, sampling=Sampling(), adapter="cycle1", seeds=[4, 5, 6]), key=lambda g: g.index
    )
    assert [g.text for g in gens] == [f"model=cycle1 seed={s}" for s in (4, 5, 6)]
    assert (gens[0].prompt_tokens, gens[0].output_tokens) == (20, 5)
    with pytest.raises(PromptTooLong):
        backend.generate(MESSAGES, n=1, sampling=Sampling(max_new_tokens=CONTEXT), adapter=None, seeds=[0])


def test_tgi_backend_sends_adapter_id_and_seed(
    server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(llm.HOME_ENV, str(request.config.cache.mkdir("deltanas_home")))
    backend = create_backend("tgi", url=server, model="smollm2-135m", adapters={"cycle1": "/adapters/c1"})
    assert backend.list_adapters() == ["cycle1"] and backend.info().context_length == CONTEXT
    with pytest.raises(UnknownAdapter):
        backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter="other", seeds=[0])
    gens = sorted(
        backend.generate(MESSAGES, n=2, sampling=Sampling(), adapter="cycle1", seeds=[8, 9]), key=lambda g: g.index
    )
    assert [g.text for g in gens] == ["adapter=/adapters/c1 seed=8", "adapter=/adapters/c1 seed=9"]
    assert gens[0].prompt_tokens == backend.count_tokens(MESSAGES) and gens[0].output_tokens == 5


def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        create_backend("openai", url="http://127.0.0.1:9", timeout_s=2)


def test_options_are_checked_per_backend(server: str) -> None:
    assert "url" in backend_options("openai") and "url" not in backend_options("local")
    with pytest.raises(ValueError, match="takes options"):
        create_backend("openai", url=server, device="cpu")
    with pytest.raises(BackendError, match="does not serve"):
        create_backend("openai", url=server, model="qwen2.5-coder-0.5b")
