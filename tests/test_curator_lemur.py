"""curator_svc.lemur on the installed LEMUR files (nn-dataset 2.1.2).

.venv/bin/pytest tests/test_curator_lemur.py
"""

from __future__ import annotations

import json

import pytest

from curator_svc.lemur import DATASETS, LemurIndex, network_reasons, supported_hyperparameters

# Usable (offline-safe) models with at least one epoch-1 trial, per dataset, in nn-dataset 2.1.2.
EXPECTED = {
    "cifar-10": 5696,
    "cifar-100": 1829,
    "mnist": 2177,
    "svhn": 2856,
    "imagenette": 1812,
    "celeba-gender": 2123,
}


@pytest.fixture(scope="module")
def index() -> LemurIndex:
    return LemurIndex.load()


def test_counts_per_dataset(index: LemurIndex) -> None:
    if index.version != "2.1.2":
        pytest.skip(f"counts are for nn-dataset 2.1.2, installed {index.version}")
    assert index.datasets() == list(DATASETS)
    assert {d: len(index.baselines(d)) for d in DATASETS} == EXPECTED
    assert sum(index.excluded.values()) == 48
    assert index.excluded["weights.get_state_dict"] == 40
    assert index.no_trials["cifar-10", 1] == 2675  # run folders whose 1.json is an empty list


def test_baseline_is_the_best_trial(index: LemurIndex) -> None:
    (airnet,) = [b for b in index.baselines("mnist") if b.name == "AirNet"]
    trials = json.loads((index.root / "stat/train/img-classification_mnist_acc_AirNet/1.json").read_text())
    best = max(trials, key=lambda t: t["accuracy"])
    assert airnet.accuracy == best["accuracy"] and airnet.batch == best["batch"]
    assert airnet.hyperparameters == {"lr": best["lr"], "momentum": best["momentum"]}
    assert airnet.transform == best["transform"] and airnet.epoch == 1 and airnet.task == "img-classification"
    assert "class Net" in airnet.code


def test_other_epochs_load_lazily(index: LemurIndex) -> None:
    later = {b.name: b for b in index.baselines("mnist", epoch=2)}
    assert later and all(b.epoch == 2 for b in later.values())


def test_excluded_models_never_appear(index: LemurIndex) -> None:
    assert not any(network_reasons(b.code) for d in DATASETS for b in index.baselines(d))


@pytest.mark.parametrize(
    "code",
    [
        "m = resnet18(pretrained=True)",
        "m = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)",
        "sd = load_state_dict_from_url(url)",
        "m = torch.hub.load('x', 'y')",
        "import urllib.request",
        "ds = CIFAR10('.', download=True)",
        "tok = AutoTokenizer.from_pretrained(name)",
    ],
)
def test_network_patterns_detected(code: str) -> None:
    assert network_reasons(code)


def test_ordinary_code_not_flagged() -> None:
    assert network_reasons("attn_weights = torch.softmax(x, -1)\nm = resnet18(pretrained=False)\n") == []


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("def supported_hyperparameters():\n    return {'lr', 'momentum'}\n", {"lr", "momentum"}),
        ("def supported_hyperparameters():\n    return ['lr',\n            'dropout']\n", {"lr", "dropout"}),
        ("def supported_hyperparameters():\n    return {'lr': 0.1, 'momentum': 0.9}\n", {"lr", "momentum"}),
    ],
)
def test_supported_hyperparameters(code: str, names: set[str]) -> None:
    assert supported_hyperparameters(code) == names


def test_supported_hyperparameters_unreadable() -> None:
    assert supported_hyperparameters("x = 1\n") is None
    assert supported_hyperparameters("def supported_hyperparameters():\n    return HP\n") is None
