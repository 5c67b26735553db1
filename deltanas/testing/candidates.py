"""Candidates to evaluate: a small real LEMUR model with a widening diff, and a tiny model to plant code in.

    request(request_id="r1")                       # an EvaluateRequest: the widening diff of MODEL on digits
    candidates(4, "warm")                          # 4 distinct such requests
    with_hook("import socket")                     # TINY_MODEL running that at the end of Net.__init__
"""

from __future__ import annotations

import textwrap

import deltadiff
from deltanas.lemur import lemur_root
from deltanas.v1 import evaluator_pb2

LEMUR_NN = lemur_root() / "nn"  # LEMUR's model files
MODEL = "rag-5ade978e0153718fa4c0b4ceb533ce32"  # a 10k-parameter two-conv LEMUR model with MNIST records
BASE = (LEMUR_NN / f"{MODEL}.py").read_text()
_TAIL = ",\n            torch.nn.ReLU(inplace=True),\n        ]\n\n        self._last"
WIDER = (BASE.replace("torch.nn.Conv2d(32, 32,", "torch.nn.Conv2d(32, 48,")
         .replace("torch.nn.BatchNorm2d(32)" + _TAIL, "torch.nn.BatchNorm2d(48)" + _TAIL)
         .replace("self._last_channels = 32", "self._last_channels = 48"))
ANSWER = f"Here is a wider second block:\n```diff\n{deltadiff.make_diff(BASE, WIDER)}```\nIt should help."


def request(**overrides) -> evaluator_pb2.EvaluateRequest:
    """The widening diff of MODEL as an EvaluateRequest on digits (one small epoch), with `overrides`."""
    fields = {"candidate_id": "t", "baseline_code": BASE, "delta_answer": ANSWER, "dataset": "digits",
              "hyperparameters": {"lr": 0.05, "momentum": 0.9}, "batch": 32, "transform": "norm", "epochs": 1,
              "train_limit": 1000, "test_limit": 300, "timeout_s": 120, **overrides}
    return evaluator_pb2.EvaluateRequest(**fields)


def candidates(n: int, tag: str) -> list[evaluator_pb2.EvaluateRequest]:
    """`n` distinct candidates (distinct request ids and learning rates) of MODEL on digits."""
    return [request(request_id=f"{tag}/{i}", candidate_id=f"{tag}-{i}",
                    hyperparameters={"lr": 0.02 + 0.005 * i, "momentum": 0.9}) for i in range(n)]


TINY_MODEL = textwrap.dedent("""
    import gc
    import os
    import torch
    import torch.nn as nn
    from functools import *


    def supported_hyperparameters():
        return {"lr", "momentum"}


    class Net(nn.Module):
        def __init__(self, in_shape, out_shape, prm, device):
            super().__init__()
            self.device = device
            self.fc = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], out_shape[0])
            # HOOK

        def train_setup(self, prm):
            self.to(self.device)
            self.criteria = nn.CrossEntropyLoss()
            self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

        def learn(self, train_data):
            for x, y in train_data:
                self.optimizer.zero_grad()
                self.criteria(self(x), y).backward()
                self.optimizer.step()
            gc.collect()

        def forward(self, x):
            return self.fc(torch.flatten(x, 1))
""")  # a valid LEMUR model despite its unused imports; `# HOOK` marks where with_hook plants code


def with_hook(body: str) -> str:
    """TINY_MODEL with `body` (any number of lines) run at the end of Net.__init__."""
    return TINY_MODEL.replace("        # HOOK", textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8))
