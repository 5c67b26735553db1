"""Training datasets for the code LLM: chat prompts and fenced targets, one JSONL line per example.

From the same pairs (LEMUR pairs plus accepted candidates of earlier cycles) it writes one dataset per
mode: `delta` (target = the unified diff) and `full` (target = the whole improved model). Filters, each
counted in the manifest: pairs with a held-out LEMUR model on either side (deltanas.heldout; for an accepted
candidate, its baseline), empty diffs, near-duplicate targets (MinHash-LSH on the diff), examples whose
prompt + target exceed `max_tokens` in *any* mode (so that both modes train on the same pairs), and a
per-dataset cap (a seeded sample). The split
is a hash of each pair's key (stable under adding or removing other pairs). A dataset's id is the short
sha256 of its JSONL bytes, so identical inputs give the same id and directory:

    <root>/<id>/train.jsonl, eval.jsonl, manifest.json

    .venv/bin/python -m curator_svc.dataset /tmp/datasets --model smollm2-135m --per-dataset 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curator_svc.novelty import NoveltyIndex
from curator_svc.options import DatasetConfig
from curator_svc.pairing import Pair
from deltanas.heldout import is_held_out
from deltanas.logs import setup_logging
from deltanas.prompts import MODES, render_messages, render_target

log = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
MANIFEST_FILE = "manifest.json"
FILTERS = (
    "pairs", "extra", "not_held_out", "nonempty", "unique_targets", "fits_tokens", "balanced", "train", "eval"
)
_ID_CHARS = 12


class EmptyDatasetError(ValueError):
    """No example survived the filters; the message lists the count after each one."""


@dataclass(frozen=True)
class BuiltDataset:
    id: str
    mode: str
    path: Path
    train: int
    eval: int
    counts: dict[str, int]


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt exactly as generation sees it: the chat template with the assistant turn opened."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def completion_text(tokenizer: Any, target: str) -> str:
    """The completion the model learns: the target and the end-of-turn token."""
    return target + tokenizer.eos_token


def target_for(mode: str, pair: Pair) -> str:
    return render_target(mode, pair.diff if mode == "delta" else pair.improved.code)


def pair_key(pair: Pair) -> str:
    return (
        f"{pair.baseline.task}/{pair.baseline.dataset}/{pair.baseline.epoch}/{pair.baseline.name}->"
        f"{pair.improved.name}@{pair.improved.accuracy:.6f}"
    )


def _is_eval(key: str, fraction: float) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) < fraction * 2**32


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def messages_for(mode: str, pair: Pair) -> list[dict[str, str]]:
    """The prompt of a pair: the LEMUR record's accuracy, or the baseline's measured facts (a measured pair)."""
    return render_messages(mode, pair.baseline, budget=pair.budget)


def _record(mode: str, pair: Pair) -> dict[str, Any]:
    b, improved = pair.baseline, pair.improved
    measured = {} if pair.budget is None else {"measured_gain": pair.measured_gain, "budget": asdict(pair.budget)}
    return {
        "messages": messages_for(mode, pair),
        "target": target_for(mode, pair),
        "meta": {
            "key": pair_key(pair),
            "dataset": b.dataset,
            "baseline": b.name,
            "improved": improved.name,
            "baseline_accuracy": b.accuracy,
            "improved_accuracy": improved.accuracy,
            "diff_lines": pair.diff_lines,
            **measured,
        },
    }


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in records)


def _filter(
    pairs: Sequence[Pair], extra: Sequence[Pair], tokenizer: Any, config: DatasetConfig, modes: Sequence[str]
) -> tuple[list[Pair], dict[str, int]]:
    counts = {"pairs": len(pairs), "extra": len(extra)}
    kept = [p for p in pairs if not (is_held_out(p.baseline.name) or is_held_out(p.improved.name))]
    kept += [p for p in extra if not is_held_out(p.baseline.name)]  # a candidate's own id is no LEMUR name
    counts["not_held_out"] = len(kept)
    kept = [p for p in kept if p.diff]
    counts["nonempty"] = len(kept)
    by_key = {pair_key(p): p for p in sorted(kept, key=pair_key)}
    unique = NoveltyIndex(config.novelty).dedupe((k, p.diff) for k, p in by_key.items())
    kept = [by_key[k] for k, _ in unique]
    counts["unique_targets"] = len(kept)
    longest = [0] * len(kept)
    for mode in modes:
        prompts = _token_lengths(
            tokenizer, [prompt_text(tokenizer, messages_for(mode, p)) for p in kept]
        )
        targets = _token_lengths(tokenizer, [completion_text(tokenizer, target_for(mode, p)) for p in kept])
        longest = [max(n, a + b) for n, a, b in zip(longest, prompts, targets, strict=True)]
    kept = [p for p, n in zip(kept, longest, strict=True) if n <= config.max_tokens]
    counts["fits_tokens"] = len(kept)
    kept = _balanced(kept, config)
    counts["balanced"] = len(kept)
    return kept, counts


def _balanced(pairs: list[Pair], config: DatasetConfig) -> list[Pair]:
    """At most `per_dataset` pairs of each LEMUR dataset (a seeded sample), in key order."""
    if not config.per_dataset:
        return pairs
    by_dataset: dict[str, list[Pair]] = {}
    for p in pairs:
        by_dataset.setdefault(p.baseline.dataset, []).append(p)
    kept = []
    for dataset, group in sorted(by_dataset.items()):
        if len(group) > config.per_dataset:
            group = random.Random(f"{config.seed}:{dataset}").sample(group, config.per_dataset)
        kept.extend(group)
    return sorted(kept, key=pair_key)


def _write(
    root: Path, mode: str, train: bytes, evaluation: bytes, manifest: dict[str, Any]
) -> tuple[str, Path]:
    dataset_id = hashlib.sha256(train + b"\0" + evaluation).hexdigest()[:_ID_CHARS]
    path = root / dataset_id
    if not (path / MANIFEST_FILE).is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}-", dir=root))
        (tmp / TRAIN_FILE).write_bytes(train)
        (tmp / EVAL_FILE).write_bytes(evaluation)
        (tmp / MANIFEST_FILE).write_text(json.dumps({"id": dataset_id, "mode": mode, **manifest}, indent=2))
        try:
            os.rename(tmp, path)
        except OSError:  # written meanwhile by another builder: same content, keep theirs
            shutil.rmtree(tmp)
    return dataset_id, path


def build_datasets(
    pairs: Sequence[Pair],
    root: Path,
    tokenizer: Any,
    config: DatasetConfig | None = None,
    extra: Sequence[Pair] = (),
    modes: Sequence[str] = MODES,
) -> dict[str, BuiltDataset]:
    """One dataset per mode of `modes` under `root` from `pairs` + `extra`; EmptyDatasetError if nothing is
    left (the examples are the same pairs in every mode)."""
    config = config or DatasetConfig()
    kept, counts = _filter(pairs, extra, tokenizer, config, modes)
    train = [p for p in kept if not _is_eval(pair_key(p), config.eval_fraction)]
    evaluation = [p for p in kept if _is_eval(pair_key(p), config.eval_fraction)]
    counts |= {"train": len(train), "eval": len(evaluation)}
    if not train:
        raise EmptyDatasetError(
            "no training example left after the filters: "
            + ", ".join(f"{name}={counts[name]}" for name in FILTERS)
            + f" (max_tokens={config.max_tokens}, eval_fraction={config.eval_fraction})"
        )
    per_dataset: dict[str, int] = {}
    for p in train:
        per_dataset[p.baseline.dataset] = per_dataset.get(p.baseline.dataset, 0) + 1
    manifest = {
        "counts": counts,
        "train_per_dataset": dict(sorted(per_dataset.items())),
        "config": {"modes": list(modes), **asdict(config)},
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
    }
    built = {}
    for mode in modes:
        dataset_id, path = _write(
            root,
            mode,
            _jsonl([_record(mode, p) for p in train]),
            _jsonl([_record(mode, p) for p in evaluation]),
            manifest,
        )
        built[mode] = BuiltDataset(dataset_id, mode, path, len(train), len(evaluation), counts)
        log.info(
            "dataset %s written: mode=%s train=%d eval=%d counts=%s",
            dataset_id,
            mode,
            len(train),
            len(evaluation),
            counts,
        )
    return built


def main() -> None:
    from curator_svc.lemur import LemurIndex
    from curator_svc.pairing import PairingConfig, pair_baselines
    from deltanas.model_sources import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--model", default="smollm2-135m", help="whose tokenizer measures max_tokens")
    parser.add_argument("--pairs-per-dataset", type=int, default=PairingConfig.max_pairs_per_dataset,
                        help="pairs kept per dataset by the pairing (before the token filter)")
    parser.add_argument("--max-diff-lines", type=int, default=PairingConfig.max_diff_lines,
                        help="longest diff of a pair, in lines")
    parser.add_argument("--per-dataset", type=int, default=DatasetConfig.per_dataset,
                        help="examples per dataset after all filters (0: no cap)")
    parser.add_argument("--max-tokens", type=int, default=DatasetConfig.max_tokens)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: delta, full")
    args = parser.parse_args()
    setup_logging()
    pairing = PairingConfig(
        max_pairs_per_dataset=args.pairs_per_dataset, max_diff_lines=args.max_diff_lines, workers=2
    )
    pairs, report = pair_baselines(LemurIndex.load().all_baselines(), pairing)
    print(report.format())
    config = DatasetConfig(max_tokens=args.max_tokens, per_dataset=args.per_dataset)
    tokenizer = load_tokenizer(args.model)
    for mode, built in build_datasets(pairs, args.root, tokenizer, config, modes=args.modes.split(",")).items():
        print(f"{mode}: {built.path} train={built.train} eval={built.eval} {built.counts}")

if __name__ == "__main__":
    main()
