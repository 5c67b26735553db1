"""Which LoRA adapter each generation mode uses, per cycle: the configured one, or (the closed loop, `finetune`)
one fine-tuned by the curator before every cycle after the first, on LEMUR pairs plus the accepted candidates.

    adapters = Adapters(cfg, services, tracker)
    adapters.start(model_info)                  # loads adapter_dir into the generator
    adapters.for_cycle(cycle, run_id)           # {"delta": "name-on-the-generator", ...}; "" = the base model

A fine-tuned adapter's path is kept as a tag of the search's parent run (through the Tracker, journaled), so a
resumed search reloads it instead of training again; each becomes an MLflow logged model of the parent run.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from client.channels import Services
from client.config import ADAPTER_TAG, DEFAULT_ADAPTER, SearchConfig
from client.tracking import Tracker
from deltanas.adapters import PREFIX as SHIPPED_PREFIX
from deltanas.adapters import default_adapter
from deltanas.v1 import curator_pb2, generator_pb2
from deltanas.vocabulary import MODE_VALUES

log = logging.getLogger("deltanas.search.adapters")


class Adapters:
    def __init__(self, cfg: SearchConfig, services: Services, tracker: Tracker) -> None:
        self.cfg = cfg
        self.svc = services
        self.tracker = tracker
        self.initial: dict[str, str] = {}  # mode -> adapter before any fine-tune ("" = the base model)

    def start(self, info: generator_pb2.GetModelInfoResponse) -> dict[str, str]:
        """Loads the adapter each mode generates with before any fine-tune (see SearchConfig.adapter_dir)."""
        cfg = self.cfg
        if cfg.adapter or not cfg.adapter_dir:
            self.initial = dict.fromkeys(cfg.modes, cfg.adapter)
            return self.initial
        if cfg.adapter_dir != DEFAULT_ADAPTER:
            paths = dict.fromkeys(cfg.modes, cfg.adapter_dir)
        elif info.backend == "local":
            paths = {m: a.ref for m in cfg.modes if (a := default_adapter(info.model, m))}
        else:
            paths = {}
            log.info("no default adapter on a %s backend: its server loads adapters itself", info.backend)
        out = dict.fromkeys(cfg.modes, "")
        loaded: dict[str, str] = {}  # path -> name: one load per adapter, however many modes use it
        for mode, path in paths.items():
            if path not in loaded:
                name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path.removeprefix(SHIPPED_PREFIX)).name)  # peft: no dots
                self.svc.generator.LoadAdapter(generator_pb2.LoadAdapterRequest(name=name, path=path), timeout=600)
                loaded[path] = name
            log.info("%s candidates are generated with adapter %s (%s)", mode, loaded[path], path)
            out[mode] = loaded[path]
        self.initial = out
        return out

    def for_cycle(self, cycle: int, run_id: str) -> dict[str, str]:
        """Generator adapter per mode for `cycle`: the initial one, or this cycle's fine-tuned one (trained once)."""
        cfg = self.cfg
        if not cfg.finetune or cycle == 0:
            return dict(self.initial)
        tags = self.tracker.run_tags(run_id)
        out = {}
        for mode in cfg.modes:
            name, tag = f"{cfg.search_id}-c{cycle}-{mode}", ADAPTER_TAG.format(cycle=cycle, mode=mode)
            path = tags.get(tag) or self._finetune(cycle, mode, run_id, name)
            self.svc.generator.LoadAdapter(generator_pb2.LoadAdapterRequest(name=name, path=path), timeout=600)
            self.tracker.set_tags(run_id, {tag: path})
            log.info("cycle %d: generating %s candidates with adapter %s (%s)", cycle, mode, name, path)
            out[mode] = name
        return out

    def _finetune(self, cycle: int, mode: str, run_id: str, name: str) -> str:
        """Builds the dataset (LEMUR pairs + accepted candidates) and fine-tunes on it; the adapter's path. The
        adapter becomes an MLflow logged model `name` of the parent run, its dataset the run's training input."""
        built = self.svc.curator.BuildDataset(curator_pb2.BuildDatasetRequest(
            datasets=self.cfg.datasets, mode=MODE_VALUES[mode], include_candidates=True), timeout=3600)
        log.info("cycle %d: %s dataset %s with %d train examples", cycle, mode, built.dataset_id,
                 built.train_examples)
        op = self.svc.curator.StartFineTune(curator_pb2.StartFineTuneRequest(
            dataset_id=built.dataset_id, max_steps=self.cfg.finetune_steps,
            gradient_accumulation=self.cfg.finetune_accumulation), timeout=60).operation
        for update in self.svc.curator.WatchFineTune(curator_pb2.WatchFineTuneRequest(id=op.id)):
            op = update.operation
            log.info("cycle %d: fine-tune %s (%s) step %d/%d loss %.4f, %.0f tokens/s", cycle, op.id, mode, op.step,
                     op.total_steps, op.loss, op.tokens_per_second)
        if op.state != curator_pb2.OPERATION_STATE_SUCCEEDED:
            state = curator_pb2.OperationState.Name(op.state).removeprefix("OPERATION_STATE_")
            raise RuntimeError(f"cycle {cycle}: fine-tune {op.id} ({mode}) ended {state}: {op.error}")
        source = {"curator_dataset": built.dataset_id, "path": built.path, "datasets": ",".join(self.cfg.datasets),
                  "accepted_candidates": "included"}
        self.tracker.log_adapter(
            run_id, name, cycle, op.adapter_path, metrics={f"{mode}/finetune_loss": op.loss},
            params={"base_model": op.model, "mode": mode, "cycle": cycle, "dataset_id": built.dataset_id,
                    "operation_id": op.id, "steps": op.step, "adapter_path": op.adapter_path},
            dataset={"name": f"{mode}-pairs", "digest": built.dataset_id, "source": json.dumps(source),
                     "profile": json.dumps({"train_examples": built.train_examples,
                                            "eval_examples": built.eval_examples})})
        return op.adapter_path
