"""Curator configuration (file + DELTANAS_CURATOR_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    min_gain: float = option(0.01, "accuracy a pair's improved model must gain over its baseline")
    max_diff_lines: int = option(120, "largest diff of a training pair, in lines")
    max_pairs_per_dataset: int = option(500, "pairs per dataset, for a balanced training set")
    max_tokens: int = option(4096, "longest prompt + target in tokens")
    eval_fraction: float = option(0.05, "share of examples held out for evaluation")
    novelty_threshold: float = option(0.9, "MinHash-Jaccard at or above which a candidate is a near-duplicate")
    num_perm: int = option(128, "MinHash permutations")
    shingle_size: int = option(7, "code tokens per shingle")
    device: str = option("auto", "fine-tuning device: auto, cpu, cuda")
    max_code_bytes: int = option(256 * 1024, "largest model code a candidate or novelty check may carry, in UTF-8 "
                                 "bytes (accepted candidates are re-read at every start)")
    max_candidates_per_call: int = option(256, "most candidates one AddCandidates call may add")
    max_finetune_steps: int = option(100_000, "largest max_steps a fine-tuning request may ask for")
    tracking_uri: str = option("", "MLflow tracking URI for dataset and fine-tuning runs (experiment "
                               "deltanas-curator); empty: $MLFLOW_TRACKING_URI, else no tracking")
