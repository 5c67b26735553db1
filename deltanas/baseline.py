"""The unit every service talks about: one LEMUR model with the trial that scored it."""

from __future__ import annotations

from dataclasses import dataclass, field

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
