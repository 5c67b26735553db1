"""How a program trains under a budget, and the one place an EvaluateRequest is built (the search's candidates and
references, the curator's measured pairs).

    settings = Settings.of(baseline, train_limit=4000, test_limit=1000)   # + the trial's transform, batch, prm
    request = settings.request("rid", "cid", seed=0, timeout_s=300, code=model_code)
    request = settings.request("rid", "cid", seed=0, timeout_s=300, delta_answer=text, baseline_code=parent_code)

A search's candidate trains under its root baseline's settings (the LEMUR trial's hyperparameters, batch and
transform) and the search's limits and epochs; so does every reference it is judged against.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from deltadiff import code_fingerprint
from deltanas.baseline import Baseline
from deltanas.v1 import evaluator_pb2


@dataclass(frozen=True)
class Settings:
    dataset: str
    transform: str
    batch: int
    hyperparameters: tuple[tuple[str, float], ...]
    train_limit: int
    test_limit: int
    epochs: int

    @classmethod
    def of(cls, baseline: Baseline, *, train_limit: int, test_limit: int, epochs: int = 1) -> Settings:
        """`baseline`'s trial (dataset, transform, batch, hyperparameters) under these limits (0: the whole split)."""
        return cls(dataset=baseline.dataset, transform=baseline.transform, batch=baseline.batch,
                   hyperparameters=tuple(sorted(baseline.hyperparameters.items())), train_limit=train_limit,
                   test_limit=test_limit, epochs=epochs)

    def key(self, code: str) -> str:
        """Names `code` trained under these settings: programs that differ only in comments and layout share it."""
        text = json.dumps({**asdict(self), "code": code_fingerprint(code)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def params(self) -> dict[str, object]:
        """The settings as MLflow params (hyperparameters as hp_<name>)."""
        flat = {k: v for k, v in asdict(self).items() if k != "hyperparameters"}
        return {**flat, **{f"hp_{k}": v for k, v in self.hyperparameters}}

    def request(self, request_id: str, candidate_id: str, *, seed: int, timeout_s: float, code: str = "",
                delta_answer: str = "", baseline_code: str = "",
                finish_reason: int = 0) -> evaluator_pb2.EvaluateRequest:
        """An EvaluateRequest training a whole model (`code`) or an LLM's diff answer against `baseline_code`
        (`finish_reason`: the generator's FinishReason of that answer)."""
        change = {"delta_answer": delta_answer, "baseline_code": baseline_code} if delta_answer else {"code": code}
        return evaluator_pb2.EvaluateRequest(
            request_id=request_id, candidate_id=candidate_id, dataset=self.dataset, transform=self.transform,
            batch=self.batch, hyperparameters=dict(self.hyperparameters), train_limit=self.train_limit,
            test_limit=self.test_limit, epochs=self.epochs, seed=seed, timeout_s=timeout_s,
            finish_reason=finish_reason, **change)
