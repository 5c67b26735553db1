"""Curator configuration (file + DELTANAS_CURATOR_* environment variables + flags).

The components' settings are their own configs, as tables: [pairing] (which LEMUR models pair up), [dataset]
(how pairs become examples, with [dataset.novelty] for near-duplicate targets) and [novelty] (CheckNovelty).

    DELTANAS_CURATOR_PAIRING__MAX_DIFF_LINES=60 deltanas serve curator --novelty.threshold 0.8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from curator_svc.options import DatasetConfig, NoveltyConfig, PairingConfig
from deltanas.config import option
from deltanas.paths import deltanas_home
from deltanas.server import ServerConfig
from deltanas.vocabulary import DEFAULT_MODEL

ENV_PREFIX = "DELTANAS_CURATOR_"


@dataclass
class CuratorConfig(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50061, "port to bind (0: any free port)")
    state_dir: Path = option(deltanas_home() / "curator", "datasets, adapters, operations and accepted candidates")
    lemur_root: Path | None = option(None, "LEMUR's ab/nn folder (default: the installed nn-dataset package)")
    model: str = option(DEFAULT_MODEL, "base model whose tokenizer filters and which fine-tuning adapts")
    device: str = option("auto", "fine-tuning device: auto, cpu, cuda")
    max_code_bytes: int = option(256 * 1024, "largest model code a candidate or novelty check may carry, in UTF-8 "
                                 "bytes (accepted candidates are re-read at every start)")
    max_candidates_per_call: int = option(256, "most candidates one AddCandidates call may add")
    max_finetune_steps: int = option(100_000, "largest max_steps a fine-tuning request may ask for")
    tracking_uri: str = option("", "MLflow tracking URI for dataset and fine-tuning runs (experiment "
                               "deltanas-curator); empty: $MLFLOW_TRACKING_URI, else no tracking")
    pairing: PairingConfig = option(PairingConfig(), "the pairing of BuildDataset: [pairing]")
    dataset: DatasetConfig = option(DatasetConfig(), "the examples of BuildDataset: [dataset]")
    novelty: NoveltyConfig = option(NoveltyConfig(), "CheckNovelty's index of LEMUR models and accepted "
                                    "candidates: [novelty]")

    RENAMED: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "min_gain": "pairing.min_gain", "max_diff_lines": "pairing.max_diff_lines",
        "max_pairs_per_dataset": "pairing.max_pairs_per_dataset", "max_tokens": "dataset.max_tokens",
        "eval_fraction": "dataset.eval_fraction",
        "novelty_threshold": ("novelty.threshold", "dataset.novelty.threshold"),
        "num_perm": ("novelty.num_perm", "dataset.novelty.num_perm"),
        "shingle_size": ("novelty.shingle", "dataset.novelty.shingle"),
    }
