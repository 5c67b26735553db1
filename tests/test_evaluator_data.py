"""Datasets in memory and LEMUR's named transforms as batch ops."""

from __future__ import annotations

import pytest
import torch

from evaluator_svc.datasets import load_dataset
from evaluator_svc.transforms import parse_transform

MEAN, STD = (0.5,), (0.25,)


def test_digits_and_mnist_subsets_are_uint8_and_deterministic() -> None:
    digits = load_dataset("digits", train_limit=100, test_limit=50)
    assert digits.train.images.dtype == torch.uint8 and digits.train.images.shape == (100, 1, 8, 8)
    assert digits.test.labels.dtype == torch.int64 and len(digits.test.labels) == 50
    mnist = load_dataset("mnist", train_limit=200, test_limit=100)
    again = load_dataset("mnist", train_limit=200, test_limit=100)
    assert mnist.train.images.shape == (200, 1, 28, 28) and mnist.num_classes == 10
    assert torch.equal(mnist.train.labels, again.train.labels)
    assert len(mnist.train.labels.unique()) == 10


def test_unknown_dataset_and_missing_root_are_clear(monkeypatch, tmp_path) -> None:
    with pytest.raises(KeyError, match="unknown dataset"):
        load_dataset("imagenet-21k")
    monkeypatch.setenv("DELTANAS_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("cifar-10")


def test_norm_resizes_crops_and_normalizes() -> None:
    images = torch.full((2, 1, 20, 30), 128, dtype=torch.uint8)
    out = parse_transform("norm_32", MEAN, STD)(images)
    assert out.shape == (2, 1, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-4)


def test_echo_squashes_without_normalizing_and_complex_casts() -> None:
    images = torch.full((3, 3, 20, 30), 255, dtype=torch.uint8)
    echo = parse_transform("echo_16", MEAN, STD)(images)
    assert echo.shape == (3, 3, 16, 16) and torch.allclose(echo, torch.ones_like(echo))
    native = parse_transform("complex", MEAN, STD)(images)
    assert native.dtype == torch.complex64 and native.shape == (3, 3, 20, 30)


def test_flip_is_seeded_and_flips_about_half() -> None:
    images = torch.arange(64 * 4, dtype=torch.uint8).view(64, 1, 1, 4)
    flip = parse_transform("echo_flip", MEAN, STD)
    first = flip(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, flip(images, torch.Generator().manual_seed(1)))
    flipped = (first != images.float() / 255).any(dim=(1, 2, 3)).sum().item()
    assert 16 < flipped < 48


@pytest.mark.parametrize("name", ["norm_32x", "resize_32", "bf-v1-Pad_38", "norm_0"])
def test_unknown_transform_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="transform"):
        parse_transform(name, MEAN, STD)
