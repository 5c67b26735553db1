"""Near-duplicate detection of model code: MinHash over code-token shingles + MinHashLSH (datasketch).

Code is tokenized with a regex (identifiers, numbers, string literals, single punctuation characters);
comments and whitespace are dropped, so reformatting or re-commenting a model does not make it novel.
Shingles are runs of `shingle` consecutive tokens.

    index = NoveltyIndex()
    index.add("AirNet", code)
    jaccard, nearest = index.query(candidate_code)     # (0.0, None) when no stored code is near
    kept = NoveltyIndex().dedupe([(key, code), ...])   # first of each near-duplicate group

Quick check: `.venv/bin/python -m curator_svc.novelty a.py b.py` prints the estimated Jaccard.
"""

from __future__ import annotations

import re
import sys
import zlib
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from curator_svc.options import NoveltyConfig

K = TypeVar("K", bound=Hashable)

# Comments first so that a '#' inside a string literal is consumed by the string alternative instead.
_TOKEN = re.compile(
    r"""(?P<str>[rbfuRBFU]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'[^'\n]*'|"[^"\n]*"))"""
    r"|(?P<comment>\#[^\n]*)"
    r"|(?P<tok>[A-Za-z_]\w*|\d[\w.]*|[^\s\w])"
)


def code_tokens(code: str) -> list[str]:
    """Code tokens without comments and whitespace (robust to code that does not parse)."""
    return [m.group() for m in _TOKEN.finditer(code) if m.lastgroup != "comment"]


def hash32(items: Iterable[str]) -> np.ndarray:
    """Deterministic 32-bit hashes (crc32; Python's hash() changes between runs)."""
    return np.fromiter((zlib.crc32(item.encode()) for item in items), dtype=np.uint64)


def shingle_hashes(tokens: list[str], size: int) -> np.ndarray:
    """Distinct 32-bit hashes of the runs of `size` consecutive tokens (the whole sequence if shorter)."""
    h = hash32(tokens)
    size = max(1, min(size, len(h)))
    out = np.zeros(len(h) - size + 1, dtype=np.uint64)
    for j in range(size):  # polynomial hash of each window, wrapping modulo 2**64, then folded to 32 bits
        out = out * np.uint64(1_000_003) + h[j : len(h) - size + 1 + j]
    return np.unique((out ^ (out >> np.uint64(32))) & np.uint64(0xFFFFFFFF))


def minhash(hashes: np.ndarray, num_perm: int) -> LeanMinHash:
    """MinHash of a set given as 32-bit hashes (same seed everywhere, so signatures are comparable)."""
    m = MinHash(num_perm=num_perm, hashfunc=int)
    m.update_batch(hashes.tolist())
    return LeanMinHash(m)


def jaccard(a: LeanMinHash, b: LeanMinHash) -> float:
    return float(np.count_nonzero(a.hashvalues == b.hashvalues)) / len(a.hashvalues)


class NoveltyIndex:
    """Stored code signatures with an LSH index for sub-linear near-duplicate queries.

    `query` estimates the Jaccard similarity only against the LSH candidates (stored items whose
    signatures collide in at least one band; those are likely, not certain, to be near `threshold` or
    above). With no candidate it returns (0.0, None): "nothing stored is near", not an exact zero.
    """

    def __init__(self, config: NoveltyConfig | None = None) -> None:
        self.config = config or NoveltyConfig()
        self._lsh = MinHashLSH(threshold=self.config.threshold, num_perm=self.config.num_perm)
        self._signatures: dict[Hashable, LeanMinHash] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._signatures

    def signature(self, code: str) -> LeanMinHash:
        return minhash(shingle_hashes(code_tokens(code), self.config.shingle), self.config.num_perm)

    def add(self, key: Hashable, code: str) -> None:
        self.add_signature(key, self.signature(code))

    def add_signature(self, key: Hashable, signature: LeanMinHash) -> None:
        if key in self._signatures:
            raise KeyError(f"key {key!r} already in the novelty index")
        self._signatures[key] = signature
        self._lsh.insert(key, signature)

    def query(self, code: str) -> tuple[float, Hashable | None]:
        """(max estimated Jaccard, nearest key) among LSH candidates; (0.0, None) if there are none."""
        return self.query_signature(self.signature(code))

    def query_signature(self, signature: LeanMinHash) -> tuple[float, Hashable | None]:
        best: tuple[float, Hashable | None] = (0.0, None)
        for key in sorted(self._lsh.query(signature), key=str):  # sorted: ties go to the same key every run
            if (similarity := jaccard(signature, self._signatures[key])) > best[0]:
                best = (similarity, key)
        return best

    def is_novel(self, code: str) -> bool:
        return self.query(code)[0] < self.config.threshold

    def dedupe(self, items: Iterable[tuple[K, str]]) -> list[tuple[K, str]]:
        """Keep, in order, each item that is no near-duplicate of one kept (or stored) before; add those."""
        kept = []
        for key, code in items:
            signature = self.signature(code)
            if self.query_signature(signature)[0] < self.config.threshold:
                self.add_signature(key, signature)
                kept.append((key, code))
        return kept


def main(argv: list[str]) -> None:
    a, b = (Path(p).read_text() for p in argv[:2])
    index = NoveltyIndex()
    print(f"estimated Jaccard {jaccard(index.signature(a), index.signature(b)):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
