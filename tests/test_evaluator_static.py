"""Static stages: syntax, LEMUR contract and the import/name/attribute safety policy."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from deltanas.testing.candidates import LEMUR_NN, TINY_MODEL, with_hook
from evaluator_svc.results import Stage
from evaluator_svc.static_checks import run_static_checks


def test_valid_model_passes_despite_unused_os_and_gc_collect() -> None:
    assert run_static_checks(TINY_MODEL) is None


def test_real_lemur_models_pass() -> None:
    files = sorted(glob.glob(str(LEMUR_NN / "*.py")))[:300]
    assert files, "nn-dataset not installed"
    passed = sum(run_static_checks(Path(f).read_text()) is None for f in files)
    assert passed / len(files) > 0.93  # about 98 % over all 10,482 files


@pytest.mark.parametrize(("code", "stage", "fragment"), [
    ("def f(:\n", Stage.SYNTAX, "line 1"),
    (TINY_MODEL.replace("def supported_hyperparameters", "def hyperparameters"), Stage.CONTRACT,
     "supported_hyperparameters"),
    (TINY_MODEL.replace("class Net(", "class Model("), Stage.CONTRACT, "class Net"),
    (TINY_MODEL.replace("def learn(", "def fit("), Stage.CONTRACT, "learn"),
    (TINY_MODEL.replace("def __init__(self, in_shape, out_shape, prm, device)", "def __init__(self)"),
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
