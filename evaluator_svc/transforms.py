"""LEMUR's named transforms (ab/nn/transform/*.py) as batch-wise tensor ops on the training device.

Names are ``<kind>[_<size>][_flip]``:

* ``norm``: Resize(size) (shorter edge, aspect kept) + CenterCrop(size), then ToTensor and
  Normalize(dataset mean, std);
* ``echo``: Resize((size, size)) (squash) then ToTensor, values in [0, 1], no normalisation;
* ``complex``: Resize((size, size)) then scale to [0, 1] and cast to complex64;
* ``_flip`` adds RandomHorizontalFlip(p=0.5); no size keeps the native resolution.

As in LEMUR, the same transform (random flip included) is applied to train and test images.
Resizing is bilinear with antialiasing, like torchvision's Resize.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

_NAME = re.compile(r"^(?P<kind>norm|echo|complex)(?:_(?P<size>\d+))?(?P<flip>_flip)?$")


@dataclass(frozen=True)
class BatchTransform:
    kind: str
    size: int | None
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # device -> (scale, shift) of the fused ToTensor + Normalize, built once per device (no per-batch copies).
    _affine: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) on any device -> float32 (or complex64) batch on the same device.

        Resizing is linear with weights summing to one, so it runs on the 0..255 values and the
        normalisation (x / 255 - mean) / std is applied afterwards as one in-place scale and shift.
        """
        x = images.to(torch.float32, copy=True)
        if self.size is not None:
            x = self._resize(x)
        if self.flip:
            mask = torch.rand(x.shape[0], generator=generator, device="cpu") < 0.5
            x = torch.where(mask.to(x.device, non_blocking=True).view(-1, 1, 1, 1), x.flip(-1), x)
        if self.kind == "norm":
            scale, shift = self._scale_shift(x.device)
            x = x.mul_(scale).add_(shift)
        else:
            x = x.div_(255.0)
        if self.kind == "complex":
            x = x.to(torch.complex64)
        return x

    def _scale_shift(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._affine:
            mean = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
            self._affine[device] = ((1.0 / (255.0 * std)).float().to(device), (-mean / std).float().to(device))
        return self._affine[device]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.size
        height, width = x.shape[-2:]
        if self.kind != "norm":
            return _interpolate(x, (size, size))
        scale = size / min(height, width)
        resized = (size, round(width * scale)) if height <= width else (round(height * scale), size)
        x = _interpolate(x, resized)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        return x[..., top:top + size, left:left + size].contiguous()


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def parse_transform(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> BatchTransform:
    """The batch transform for a LEMUR transform name; ValueError naming the supported forms otherwise."""
    match = _NAME.match(name.strip())
    if not match:
        raise ValueError(f"unsupported transform {name!r}: expected norm|echo|complex, optionally _<size> "
                         "and _flip (e.g. norm_32, echo_128_flip, complex_64)")
    size = int(match["size"]) if match["size"] else None
    if size is not None and not 1 <= size <= 1024:
        raise ValueError(f"transform {name!r}: size must be in 1..1024")
    return BatchTransform(match["kind"], size, bool(match["flip"]), mean, std)
