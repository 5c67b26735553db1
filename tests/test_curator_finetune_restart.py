"""A fine-tuning operation survives a SIGKILL of its curator: the restarted curator resumes it from its newest
checkpoint under the same id, and it ends with the planned step count and an adapter that loads.

.venv/bin/pytest -m slow tests/test_curator_finetune_restart.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import torch

from curator_svc.dataset import MANIFEST_FILE, TRAIN_FILE
from curator_svc.service import DATASETS_DIR
from deltanas import model_sources
from deltanas.paths import HOME_ENV
from deltanas.testing.processes import free_port
from deltanas.v1 import curator_pb2, curator_pb2_grpc

MODEL = "smollm2-135m"
ROOT = Path(__file__).resolve().parents[1]
STEPS, SAVE_EVERY = 8, 2
SUCCEEDED = curator_pb2.OPERATION_STATE_SUCCEEDED

pytestmark = pytest.mark.slow


class Curator:
    """`python -m curator_svc` in its own process, on a fixed port and state directory."""

    def __init__(self, state_dir: Path, home: Path) -> None:
        self.port, self.state_dir = free_port(), state_dir
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.env |= {HOME_ENV: str(home), "OMP_NUM_THREADS": "1"}
        self.proc: subprocess.Popen | None = None
        self.log = state_dir.parent / "curator.log"

    def start(self) -> curator_pb2_grpc.CuratorServiceStub:
        with self.log.open("a") as log:  # a file, not a pipe: nobody reads while it trains
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "curator_svc", "--port", str(self.port), "--state-dir", str(self.state_dir),
                 "--device", "cpu", "--health-interval-s", "0"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=120)
        return curator_pb2_grpc.CuratorServiceStub(self.channel)

    def kill(self) -> None:
        assert self.proc is not None
        self.channel.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> str:
        """Stops the curator if it runs; the log of all its starts."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        return self.log.read_text() if self.log.exists() else ""


def _dataset(state_dir: Path) -> str:
    dataset_id = "restarttest1"
    path = state_dir / DATASETS_DIR / dataset_id
    path.mkdir(parents=True)
    records = [{"messages": [{"role": "user", "content": f"Widen layer {i}."}],
                "target": f"```diff\n-x = {i}\n+x = {2 * i}\n```"} for i in range(4)]
    (path / TRAIN_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / MANIFEST_FILE).write_text(json.dumps({"id": dataset_id, "mode": "delta"}))
    return dataset_id


def _wait(stub, op_id: str, done, timeout_s: float = 600) -> curator_pb2.FineTuneOperation:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        op = stub.GetFineTune(curator_pb2.GetFineTuneRequest(id=op_id), timeout=30).operation
        if done(op):
            return op
        time.sleep(0.2)
    raise AssertionError(f"operation {op_id} did not get there in {timeout_s} s: {op}")


def test_operation_resumes_after_sigkill_of_the_curator(tmp_path: Path, deltanas_home: Path) -> None:
    curator = Curator(tmp_path / "state", deltanas_home)
    dataset_id = _dataset(curator.state_dir)
    try:
        stub = curator.start()
        op = stub.StartFineTune(curator_pb2.StartFineTuneRequest(
            dataset_id=dataset_id, model=MODEL, max_steps=STEPS, lora_r=4, gradient_accumulation=1,
            save_every=SAVE_EVERY), timeout=30).operation
        _wait(stub, op.id, lambda o: o.step > SAVE_EVERY)  # one checkpoint written, training under way
        curator.kill()

        stub = curator.start()
        resumed = _wait(stub, op.id, lambda o: o.restarts == 1 and o.resumed_from_step > 0)
        assert resumed.id == op.id and resumed.resumed_from_step % SAVE_EVERY == 0
        assert SAVE_EVERY <= resumed.resumed_from_step < STEPS
        final = _wait(stub, op.id, lambda o: o.state == SUCCEEDED or o.error != "")
        assert final.state == SUCCEEDED, final.error
        assert final.step == final.total_steps == STEPS and final.restarts == 1
    finally:
        log = curator.stop()
    assert f"operation {op.id}: interrupted by a restart, resuming" in log
    assert f"resuming at step {resumed.resumed_from_step}/{STEPS}" in log

    from peft import PeftModel

    adapter = Path(final.adapter_path)
    assert (adapter / "adapter_model.safetensors").is_file()
    base = model_sources.load_model(MODEL)
    ids = torch.tensor([model_sources.load_tokenizer(MODEL)("x = 1")["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        after = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
    assert not torch.allclose(before, after)
    assert json.loads((adapter / "finetune_result.json").read_text())["steps"] == STEPS
