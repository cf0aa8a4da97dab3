"""The base of the data package: multi-resolution image sets and their error type.

Every level from 4x4 to the full resolution is kept, each the 2x2 box average of the level above
rounded to uint8 (as the reference's datasets), so reading a minibatch at resolution r costs r*r.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..util.errors import PgganError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class DataError(PgganError, ValueError):
    """The data cannot be used; the message says why and what to do."""


def box_downsample_uint8(a: np.ndarray) -> np.ndarray:
    """[..., H, W] uint8 -> [..., H/2, W/2], the exact 2x2 mean rounded half up."""
    s = (a[..., 0::2, 0::2].astype(np.uint16) + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2])
    return ((s + 2) // 4).astype(np.uint8)


@dataclass
class ImageSet:
    levels: dict            # {resolution: uint8 array [N, C, r, r]}
    labels: np.ndarray | None   # [N] int64 class indices, or None
    label_size: int
    description: str

    @classmethod
    def from_full(cls, images: np.ndarray, labels=None, label_size: int = 0, description: str = "") -> "ImageSet":
        levels = {images.shape[-1]: np.ascontiguousarray(images)}
        r = images.shape[-1]
        while r > 4:
            levels[r // 2] = box_downsample_uint8(levels[r])
            r //= 2
        return cls(levels, labels, label_size, description)

    def __len__(self) -> int:
        return next(iter(self.levels.values())).shape[0]

    @property
    def resolution(self) -> int:
        return max(self.levels)

    @property
    def channels(self) -> int:
        return self.levels[self.resolution].shape[1]
