"""A small network whose code the diff tests change."""

NET = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, kernel_size=3)
        self.bn = nn.BatchNorm2d(32)
        self.relu = nn.ReLU()

        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = x.mean((2, 3))
        return self.fc(x)
"""
