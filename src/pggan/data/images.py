"""Multi-resolution image sets in memory, and a deterministic, resumable minibatch order.

Every level from 4x4 to the full resolution is kept, each the 2x2 box average of the level above
rounded to uint8 (as the reference's datasets), so reading a minibatch at resolution r costs r*r.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .builtin import BUILTIN, render_builtin

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
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


def load_images(spec: str, resolution: int, channels: int, count: int, seed: int = 0) -> ImageSet:
    """Training data at ``resolution``: ``builtin:NAME``, a pggan dataset folder (memory-mapped), or a
    folder / archive of images (decoded in memory by the same code as ``pggan dataset create``)."""
    from .dataset import is_dataset, open_dataset

    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise DataError(f"unknown builtin dataset '{name}'; available: {', '.join('builtin:' + b for b in BUILTIN)}")
        return ImageSet.from_full(render_builtin(name, count, resolution, channels, seed),
                                  description=f"builtin:{name} ({count} images, seed {seed})")
    if not os.path.exists(spec):
        raise DataError(f"data '{spec}' does not exist; give a dataset made by `pggan dataset create`, a folder "
                        f"or archive of images, or builtin:NAME ({', '.join('builtin:' + b for b in BUILTIN)})")
    if is_dataset(spec):
        ds = open_dataset(spec, resolution)
        if ds.channels != channels:
            raise DataError(f"dataset '{spec}' has {ds.channels} channel(s) but the network expects {channels}; "
                            f"set --set net.channels={ds.channels}")
        return ds
    return _load_unconverted(spec, resolution, channels, count)


def _load_unconverted(spec: str, resolution: int, channels: int, count: int) -> ImageSet:
    from .convert import ConvertOptions, prepare_many, select_keys
    from .sources import open_source

    source = open_source(spec)
    opts = ConvertOptions(resolution=resolution, channels=channels, max_count=count, small="upscale").validate()
    keys = select_keys(source, opts)
    if not keys:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{spec}'")
    report: list[str] = []
    images, labels, bad = prepare_many(list(source.read(set(keys))), opts, report=report)
    if images is None:
        raise DataError(f"none of the {len(keys)} files in '{spec}' could be read; first problem: {report[0]}")
    names = source.label_names
    return ImageSet.from_full(images, np.asarray(labels) if labels else None, len(names),
                              description=f"{source.describe()} ({len(images)} images, {bad} skipped)")


class DataOrder:
    """Which images, mirrored or not, form each minibatch: a pure function of (seed, epoch, position).

    The state to resume is just ``(epoch, pos)``; a shard of ``rank``/``world`` takes every world-th item.
    """

    def __init__(self, n: int, seed: int, mirror: bool, epoch: int = 0, pos: int = 0):
        self.n, self.seed, self.mirror = n, seed, mirror
        self.epoch, self.pos = epoch, pos
        self._load_epoch()

    def _load_epoch(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self._perm = rng.permutation(self.n)
        self._flip = rng.random(self.n) < 0.5 if self.mirror else np.zeros(self.n, dtype=bool)

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        idx, flip = [], []
        while count > 0:
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._load_epoch()
            k = min(count, self.n - self.pos)
            idx.append(self._perm[self.pos:self.pos + k])
            flip.append(self._flip[self.pos:self.pos + k])
            self.pos += k
            count -= k
        return np.concatenate(idx), np.concatenate(flip)

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}


def minibatch(images: ImageSet, order: DataOrder, batch: int, resolution: int, device: torch.device,
              rank: int = 0, world: int = 1):
    """Real images in [-1, 1] as float32 [batch / world, C, r, r] on ``device``, and one-hot labels (or None).

    Every rank advances the same global order by the global ``batch`` and keeps its own contiguous
    shard, so one seed gives the same data whatever the number of ranks."""
    idx, flip = order.take(batch)
    lo, hi = rank * batch // world, (rank + 1) * batch // world
    idx, flip = idx[lo:hi], flip[lo:hi]
    x = torch.from_numpy(images.levels[resolution][idx]).to(device)
    if flip.any():
        f = torch.from_numpy(flip).to(device)
        x = torch.where(f[:, None, None, None], x.flip(-1), x)
    x = x.float() * (2.0 / 255.0) - 1.0
    labels = None
    if images.labels is not None and images.label_size:
        labels = torch.nn.functional.one_hot(torch.from_numpy(images.labels[idx]), images.label_size).float().to(device)
    return x, labels
