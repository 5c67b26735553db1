"""A tiny MLP on `digits` that learns slowly with plain SGD: room for a better optimizer, and a change that trains
the very same model. Shared by the tests of outcomes, references and measured pairs.

    from tests.support.tiny import ADAM, BASELINE, NO_OP, SETTINGS, TINY
"""

from __future__ import annotations

import deltadiff
from deltanas.baseline import Baseline
from deltanas.training import Settings

# A two-layer MLP that learns slowly with plain SGD at this learning rate: room for a better optimizer.
TINY = '''import torch


def supported_hyperparameters():
    return {'lr', 'momentum'}


class Net(torch.nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.lr, self.momentum = prm['lr'], prm['momentum']
        size = in_shape[1] * in_shape[2] * in_shape[3]
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, 32), torch.nn.ReLU(),
                                          torch.nn.Linear(32, out_shape[0]))

    def forward(self, x):
        return self.layers(x)

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria(self(inputs), labels)
            loss.backward()
            self.optimizer.step()
'''
BASELINE = Baseline(name="tiny-mlp", dataset="digits", code=TINY, accuracy=0.5,
                    hyperparameters={"lr": 0.02, "momentum": 0.0}, batch=32, transform="norm")
SETTINGS = Settings.of(BASELINE, train_limit=0, test_limit=0)
NO_OP = TINY.replace("loss.backward()", "loss.backward(retain_graph=True)")  # changes the code, not the training
ADAM = TINY.replace("torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)",
                    "torch.optim.Adam(self.parameters(), lr=0.01)")


def answer(code: str) -> str:
    """An LLM-style answer holding the diff from TINY to `code`."""
    return f"```diff\n{deltadiff.make_diff(TINY, code)}```"
