"""The unit every service talks about: one LEMUR model with the trial that scored it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Baseline:
    """A model's code with the hyperparameters and accuracy of one recorded trial."""

    name: str
    dataset: str
    code: str
    accuracy: float
    epoch: int = 1
    task: str = "img-classification"
    metric: str = "acc"
    hyperparameters: dict[str, float] = field(default_factory=dict)
    batch: int = 64
    transform: str = "norm"

    def prm(self) -> dict[str, object]:
        """The `prm` dict a LEMUR model receives: hyperparameters plus batch and transform."""
        return {**self.hyperparameters, "batch": self.batch, "transform": self.transform, "epoch": self.epoch}
