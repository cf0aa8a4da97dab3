"""Which real images form each minibatch: a deterministic, resumable order, and the minibatch itself."""
from __future__ import annotations

import numpy as np
import torch

from ..data.base import ImageSet
from ..util.checks import one_hot
from ..util.device import to_device


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
    x = to_device(torch.from_numpy(images.levels[resolution][idx]), device)
    if flip.any():
        f = to_device(torch.from_numpy(flip), device)
        x = torch.where(f[:, None, None, None], x.flip(-1), x)
    x = x.float() * (2.0 / 255.0) - 1.0
    labels = None
    if images.labels is not None and images.label_size:
        labels = to_device(one_hot(images.labels[idx], images.label_size), device)
    return x, labels
