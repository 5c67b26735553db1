"""The unit every service talks about: one LEMUR model with the trial that scored it, and what a search measured
of a model under its own budget."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from deltanas.errors import require
from deltanas.v1 import common_pb2


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

    def to_proto(self) -> common_pb2.Baseline:
        return common_pb2.Baseline(name=self.name, dataset=self.dataset, task=self.task, metric=self.metric,
                                   epoch=self.epoch, accuracy=self.accuracy, code=self.code,
                                   hyperparameters=self.hyperparameters, batch=self.batch, transform=self.transform)

    @classmethod
    def from_proto(cls, msg: common_pb2.Baseline) -> Baseline:
        """The Baseline a message describes; unset fields take the defaults above (proto3 has no presence)."""
        return cls(name=msg.name, dataset=msg.dataset, code=msg.code, accuracy=msg.accuracy, epoch=msg.epoch or 1,
                   task=msg.task or cls.task, metric=msg.metric or cls.metric,
                   hyperparameters=dict(msg.hyperparameters), batch=msg.batch or cls.batch,
                   transform=msg.transform or cls.transform)


@dataclass(frozen=True)
class Budget:
    """What a search measured of a model under its budget (the same settings its candidates train with)."""

    accuracy: float  # mean over the seeds
    spread: float  # standard deviation over the seeds
    seeds: int
    train_images: int
    num_params: int
    train_seconds: float

    @classmethod
    def over_seeds(cls, accuracies: Sequence[float], train_images: int, num_params: int,
                   train_seconds: float) -> Budget:
        """The facts of a model measured with one accuracy per seed."""
        return cls(accuracy=seed_mean(accuracies), spread=seed_spread(accuracies), seeds=len(accuracies),
                   train_images=max(train_images, 1), num_params=num_params, train_seconds=train_seconds)

    def to_proto(self) -> common_pb2.BudgetFacts:
        return common_pb2.BudgetFacts(accuracy=self.accuracy, spread=self.spread, seeds=self.seeds,
                                      train_images=self.train_images, num_params=self.num_params,
                                      train_seconds=self.train_seconds)

    @classmethod
    def from_proto(cls, msg: common_pb2.BudgetFacts, field: str = "budget") -> Budget:
        """The facts of a request, checked (InvalidArgument naming `field`.<name> otherwise)."""
        require(0 <= msg.accuracy <= 1, f"{field}.accuracy", f"must be in [0, 1], got {msg.accuracy}")
        require(0 <= msg.spread <= 1, f"{field}.spread", f"must be in [0, 1], got {msg.spread}")
        require(1 <= msg.seeds <= 1000, f"{field}.seeds", f"must be in [1, 1000], got {msg.seeds}")
        require(1 <= msg.train_images <= 10**9, f"{field}.train_images", f"must be in [1, 1e9], got {msg.train_images}")
        require(0 <= msg.num_params <= 10**13, f"{field}.num_params", f"must be in [0, 1e13], got {msg.num_params}")
        require(0 <= msg.train_seconds < 1e7, f"{field}.train_seconds", f"must be in [0, 1e7), got {msg.train_seconds}")
        return cls(accuracy=msg.accuracy, spread=msg.spread, seeds=msg.seeds, train_images=msg.train_images,
                   num_params=msg.num_params, train_seconds=msg.train_seconds)


def seed_mean(accuracies: Sequence[float]) -> float:
    """Mean accuracy over the seeds (0 with none)."""
    return statistics.fmean(accuracies) if accuracies else 0.0


def seed_spread(accuracies: Sequence[float]) -> float:
    """Standard deviation of the accuracy over the seeds (0 with fewer than two)."""
    return statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
