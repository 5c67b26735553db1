"""What a search does: `SearchConfig` (validated before any work starts), the generation modes and the names a
search records, plus `stored_config` to resume a search as its parent run recorded it.

    from client.config import SearchConfig
    cfg = SearchConfig(datasets=["mnist"], candidates=3)

Imports only `deltanas.config` and the proto stubs, so that `deltanas serve`, `up`, `apply` and `--help`, which
build the `run` parser from `SearchConfig`, start in a service image without MLflow.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import time
import typing
import uuid
from dataclasses import dataclass
from typing import Any

from deltanas.baseline import Baseline
from deltanas.config import option
from deltanas.training import Settings
from deltanas.vocabulary import MAX_NEW_TOKENS, MAX_TEMPERATURE, MODE_VALUES, TEMPERATURE, TOP_K, TOP_P

DECODINGS = ("auto", "constrained", "free")
# Failure stages whose reason is worth sending back to the LLM in a repair attempt.
REPAIRABLE = frozenset({"extract", "apply", "syntax", "contract"})
ADAPTER_TAG = "deltanas.adapter.c{cycle}.{mode}"
DEFAULT_ADAPTER = "default"


@dataclass
class SearchConfig:
    """What one search does; validated before any work starts."""

    search_id: str = option("", "id of the search (and its MLflow parent run); empty: a new one")
    datasets: list[str] = option(["mnist"], "datasets to draw baselines from")
    baselines: int = option(1, "baselines per dataset and cycle (each cycle takes the next ones)")
    baseline_names: list[str] = option([], "only these LEMUR models (empty: any)")
    candidates: int = option(3, "candidates per baseline and mode")
    modes: list[str] = option(["delta"], "delta, full, or both for an A/B search")
    cycles: int = option(1, "search cycles")
    temperature: float = option(TEMPERATURE, "sampling temperature")
    top_k: int = option(TOP_K, "top-k sampling")
    top_p: float = option(TOP_P, "nucleus sampling")
    max_new_tokens: int = option(MAX_NEW_TOKENS, "longest LLM answer in tokens")
    decoding: str = option("auto", "delta mode: constrained (under a grammar built from the baseline, so that "
                                   "every diff applies; local and openai/vLLM generator backends), free, or auto "
                                   "(constrained where the generator supports it)")
    seed: int = option(0, "base seed; candidate i of a baseline uses a seed derived from it")
    adapter: str = option("", "name of an adapter already loaded on the generator, for every mode (overrides "
                              "adapter_dir)")
    adapter_dir: str = option(DEFAULT_ADAPTER, "adapter to load into the generator and generate with: a PEFT "
                              "directory on the generator's host, shipped:<name>, 'default' (the adapter shipped "
                              "for the generator's model and mode, if any; local backend only) or '' (the base "
                              "model)")
    epochs: int = option(1, "training epochs per candidate")
    train_limit: int = option(0, "train images per candidate (0: the whole split)")
    test_limit: int = option(0, "test images per candidate (0: the whole split)")
    eval_timeout_s: float = option(900.0, "wall-clock limit of one candidate's sandboxed run")
    accept_accuracy: float = option(0.0, "accuracy an improved, novel candidate also needs to be accepted into the "
                                         "curator's corpus, in [0, 1]")
    selection: str = option("paging", "how each cycle picks the programs to change: paging (the next LEMUR baselines "
                                      "every cycle, the paper's protocol) or evolve (parents drawn from the archive of "
                                      "evaluated programs by fitness and novelty, one island per dataset)")
    reference_seeds: int = option(3, "seeds each baseline, and each improved candidate before it becomes a parent, "
                                     "trains with under the candidates' settings: its same-budget reference")
    improve_spread: float = option(2.0, "a candidate is improved when its gain over the reference's mean exceeds "
                                        "this many seed spreads (standard deviations) and improve_min_points")
    improve_min_points: float = option(1.0, "the smallest gain, in accuracy points, that counts as improved")
    skip_non_learning: bool = option(True, "skip a baseline that does not beat chance with every reference seed "
                                           "(no candidate of it could count); false: generate for it anyway")
    resample_limit: int = option(2, "new answers asked for a candidate whose program was already evaluated on the "
                                    "same parent (or is the parent itself)")
    resample_heat: float = option(0.3, "added to the temperature for each re-sample round of duplicates (round r "
                                       "samples at temperature + r x this), so that a re-sample explores beyond the "
                                       "answer it repeated")
    history: int = option(8, "changes already tried on a parent that its prompt lists with their outcome (0: none)")
    evolve_exploration: float = option(0.2, "evolve: chance that a parent draw takes a fresh LEMUR baseline")
    evolve_novelty: float = option(0.5, "evolve: weight of novelty (1 - MinHash-Jaccard to known models) in a "
                                        "program's draw weight")
    evolve_decay: float = option(0.5, "evolve: factor on a program's draw weight per visit without an improvement")
    evolve_patience: int = option(2, "evolve: the island's best program is a parent of every cycle until it had "
                                     "this many visits without an improvement")
    experiment: str = option("deltanas", "MLflow experiment")
    finetune: bool = option(False, "before every cycle after the first, rebuild the dataset with the accepted "
                                   "candidates and fine-tune a fresh adapter per mode to generate with")
    finetune_steps: int = option(0, "optimizer steps of each cycle's fine-tune (0: one epoch)")
    finetune_accumulation: int = option(0, "micro-batches per fine-tune step (0: the curator's default)")
    repair_rounds: int = option(0, "repair attempts of a candidate that failed at extract, apply, syntax or "
                                   "contract, each sending the failure reason back to the generator")
    retrain_top_k: int = option(0, "after each cycle, re-train its k most accurate valid candidates (0: off)")
    retrain_epochs: int = option(5, "epochs of that re-training (metric accuracy_long, param long_epochs)")
    retrain_timeout_s: float = option(7200.0, "wall-clock limit of one candidate's re-training")

    def __post_init__(self) -> None:
        checks = [
            (self.candidates >= 1, "candidates", "must be at least 1"),
            (self.cycles >= 1, "cycles", "must be at least 1"),
            (self.baselines >= 1, "baselines", "must be at least 1"),
            (bool(self.datasets), "datasets", "must name at least one dataset"),
            (bool(self.modes) and set(self.modes) <= set(MODE_VALUES), "modes",
             f"must be a subset of {sorted(MODE_VALUES)}"),
            (0.0 <= self.accept_accuracy <= 1.0, "accept_accuracy", "must be within [0, 1]"),
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
            (self.decoding in DECODINGS, "decoding", f"must be one of {', '.join(DECODINGS)}"),
            (self.finetune_steps >= 0, "finetune_steps", "must not be negative"),
            (self.finetune_accumulation >= 0, "finetune_accumulation", "must not be negative"),
            (self.repair_rounds >= 0, "repair_rounds", "must not be negative"),
            (self.retrain_top_k >= 0, "retrain_top_k", "must not be negative"),
            (self.retrain_epochs >= 1, "retrain_epochs", "must be at least 1"),
            (self.eval_timeout_s > 0, "eval_timeout_s", "must be positive"),
            (self.retrain_timeout_s > 0, "retrain_timeout_s", "must be positive"),
            (self.reference_seeds >= 1, "reference_seeds", "must be at least 1"),
            (self.improve_spread >= 0, "improve_spread", "must not be negative"),
            (self.improve_min_points >= 0, "improve_min_points", "must not be negative"),
            (self.resample_limit >= 0, "resample_limit", "must not be negative"),
            (self.resample_heat >= 0 and self.resample_temperature(self.resample_limit) <= MAX_TEMPERATURE,
             "resample_heat", f"must not be negative, nor take temperature + resample_limit x it above "
                              f"{MAX_TEMPERATURE}"),
            (0 <= self.history <= 16, "history", "must be within [0, 16]"),
            (0 <= self.evolve_exploration <= 1, "evolve_exploration", "must be within [0, 1]"),
            (self.evolve_novelty >= 0, "evolve_novelty", "must not be negative"),
            (0 < self.evolve_decay <= 1, "evolve_decay", "must be within (0, 1]"),
            (self.evolve_patience >= 0, "evolve_patience", "must not be negative"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise ValueError(f"{name}: {problem} (got {getattr(self, name)!r})")
        from client.search.selection import SELECTIONS  # the registry (imports no I/O)

        if self.selection not in SELECTIONS:
            raise ValueError(f"selection: must be one of {', '.join(SELECTIONS)} (got {self.selection!r})")
        if not self.search_id:
            self.search_id = time.strftime("s%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def settings(self, baseline: Baseline, epochs: int | None = None) -> Settings:
        """How a candidate of `baseline` (and its reference) trains in this search."""
        return Settings.of(baseline, train_limit=self.train_limit, test_limit=self.test_limit,
                           epochs=epochs or self.epochs)

    def resample_temperature(self, rounds: int) -> float:
        """The temperature of re-sample round `rounds` (0: the first answers)."""
        return self.temperature + rounds * self.resample_heat

    def lineage(self) -> list[dict[str, str]]:
        """What the search trains on, per dataset, for MLflow's dataset lineage: the evaluator's split limits (0:
        the whole split) and the baselines; the digest names exactly that selection (the evaluator holds the data)."""
        out = []
        for dataset in self.datasets:
            source = {"dataset": dataset, "train_limit": self.train_limit, "test_limit": self.test_limit,
                      "baselines": ",".join(self.baseline_names) or f"{self.baselines} per cycle from the curator"}
            digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
            profile = {"train_images": self.train_limit or "all", "test_images": self.test_limit or "all"}
            out.append({"name": dataset, "digest": digest, "source": json.dumps(source),
                        "profile": json.dumps(profile), "context": "evaluation"})
        return out


def stored_config(params: dict[str, str]) -> dict[str, Any]:
    """The SearchConfig values a search's parent run recorded (its params), for resuming it as it was.

    Lists are recorded comma-joined (`build` splits them); a store written before that holds their Python repr.
    """
    hints = typing.get_type_hints(SearchConfig)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(SearchConfig):
        if f.name in params and f.name != "search_id":
            raw = params[f.name]
            legacy = typing.get_origin(hints[f.name]) is list and raw.startswith("[")
            out[f.name] = ast.literal_eval(raw) if legacy else raw
    return out
