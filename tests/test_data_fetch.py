"""`deltanas data fetch/list` against a local HTTP server that serves SVHN in its real format (.mat files).

torchvision's SVHN downloader is pointed at the server (its URLs and md5 checksums patched to the small
files); the fetch must store them, `data list` must say present, the evaluator must load them, and a file whose
checksum differs must be refused.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torchvision.datasets as tvd

from client.cli import main
from evaluator_svc.datasets import load_dataset

SIZES = {"train": 12, "test": 5}


def _write_svhn(directory: Path) -> dict[str, list[str]]:
    """SVHN's layout: X (32, 32, 3, N) uint8, y (N, 1) with labels 1..10 (10 is the digit 0)."""
    rng = np.random.default_rng(0)
    entries = {}
    for split, n in SIZES.items():
        name = f"{split}_32x32.mat"
        scipy.io.savemat(directory / name, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                            "y": (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)})
        entries[split] = [name, hashlib.md5((directory / name).read_bytes()).hexdigest()]
    return entries


@pytest.fixture()
def svhn_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    entries = _write_svhn(served)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setattr(tvd.SVHN, "split_list", {
        split: [f"{url}/{name}", name, md5] for split, (name, md5) in entries.items()})
    yield url
    httpd.shutdown()
    httpd.server_close()


def test_fetch_stores_what_the_evaluator_loads_and_list_says_so(svhn_server: str, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    assert main(["data", "list", "--root", str(root)]) == 0
    assert "svhn           missing" in capsys.readouterr().out
    assert main(["data", "fetch", "svhn", "--root", str(root)]) == 0
    assert f"svhn: present in {root}" in capsys.readouterr().out
    assert main(["data", "list", "--root", str(root)]) == 0
    listing = capsys.readouterr().out
    assert "svhn           present" in listing and "mnist          bundled" in listing
    data = load_dataset("svhn", data_root=root)
    assert (len(data.train.labels), len(data.test.labels)) == (SIZES["train"], SIZES["test"])
    assert tuple(data.train.images.shape[1:]) == (3, 32, 32) and int(data.train.labels.max()) <= 9


def test_a_file_whose_checksum_differs_is_refused(svhn_server: str, tmp_path: Path, monkeypatch, capsys) -> None:
    name = tvd.SVHN.split_list["train"][1]
    monkeypatch.setitem(tvd.SVHN.split_list, "train", [f"{svhn_server}/{name}", name, "0" * 32])
    assert main(["data", "fetch", "svhn", "--root", str(tmp_path / "data")]) == 2
    assert "deltanas: error: dataset svhn:" in capsys.readouterr().err
    assert main(["data", "list", "--root", str(tmp_path / "data")]) == 0
    assert "svhn           missing" in capsys.readouterr().out


def test_bundled_and_unknown_datasets_are_clear_errors(capsys) -> None:
    assert main(["data", "fetch", "mnist", "--root", "/tmp/x"]) == 2
    assert "ships with its Python package" in capsys.readouterr().err
    assert main(["data", "fetch", "imagenet-22k"]) == 2
    assert "dataset: unknown 'imagenet-22k'" in capsys.readouterr().err
