"""Static stages: syntax, LEMUR contract and the import/name/attribute safety policy."""

from __future__ import annotations

import glob
import textwrap
from pathlib import Path

import pytest

from evaluator_svc.stages import Stage
from evaluator_svc.static_checks import run_static_checks

LEMUR_NN = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/ab/nn/nn"

MODEL = textwrap.dedent("""
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
""")


def with_hook(body: str) -> str:
    """MODEL with `body` (any number of lines) run at the end of Net.__init__."""
    return MODEL.replace("        # HOOK", textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8))


def test_valid_model_passes_despite_unused_os_and_gc_collect() -> None:
    assert run_static_checks(MODEL) is None


def test_real_lemur_models_pass() -> None:
    files = sorted(glob.glob(str(LEMUR_NN / "*.py")))[:300]
    assert files, "nn-dataset not installed"
    passed = sum(run_static_checks(Path(f).read_text()) is None for f in files)
    assert passed / len(files) > 0.93  # about 98 % over all 10,482 files


@pytest.mark.parametrize(("code", "stage", "fragment"), [
    ("def f(:\n", Stage.SYNTAX, "line 1"),
    (MODEL.replace("def supported_hyperparameters", "def hyperparameters"), Stage.CONTRACT,
     "supported_hyperparameters"),
    (MODEL.replace("class Net(", "class Model("), Stage.CONTRACT, "class Net"),
    (MODEL.replace("def learn(", "def fit("), Stage.CONTRACT, "learn"),
    (MODEL.replace("def __init__(self, in_shape, out_shape, prm, device)", "def __init__(self)"),
     Stage.CONTRACT, "__init__"),
])
def test_syntax_and_contract_failures(code: str, stage: Stage, fragment: str) -> None:
    failure = run_static_checks(code)
    assert failure is not None and failure[0] is stage and fragment in failure[1]


@pytest.mark.parametrize(("line", "fragment"), [
    ("import subprocess", "subprocess"),
    ("import socket", "socket"),
    ("import ctypes", "ctypes"),
    ("import importlib", "importlib"),
    ("from os import system", "from os import system"),
    ("os.system('id')", "system"),
    ("x = os.environ['HOME']", "os"),
    ("import sys as s; s.modules", "sys"),
    ("eval('1')", "eval"),
    ("exec('1')", "exec"),
    ("f = open('/etc/passwd')", "open"),
    ("__import__('os')", "__import__"),
    ("g = globals()", "globals"),
    ("getattr(self, '__class__')", "__class__"),
    ("c = ().__class__.__base__.__subclasses__()", "__subclasses__"),
    ("f = self.forward.__globals__", "__globals__"),
    ("torch.load('x.pt')", "torch.load"),
    ("import torch.hub as h", "torch.hub"),
    ("from torch.utils import cpp_extension", "cpp_extension"),
    ("t = torch; t.hub.load('a', 'b')", "torch.hub"),
    ("import numpy as np; np.load('x.npy')", "numpy.load"),
    ("from torch import *", "from torch import *"),
    ("f = getattr(torch, 'lo' + 'ad')", "computed name"),
    ("import operator; operator.attrgetter('x')", "operator.attrgetter"),
    ("name = 'forward.__globals__'", "denied attribute"),
    ("import numpy as np; np.lib.npyio.load('x')", "numpy.lib.npyio"),
])
def test_safety_failures(line: str, fragment: str) -> None:
    failure = run_static_checks(with_hook(line))
    assert failure is not None and failure[0] is Stage.SAFETY, failure
    assert fragment in failure[1]
