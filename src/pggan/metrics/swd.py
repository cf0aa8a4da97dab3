"""Sliced Wasserstein distance between Laplacian-pyramid patch distributions (paper section 5).

Per pyramid level (full resolution down to a 16x16 low-pass residual, 5x5 binomial filter with mirror
borders), 128 random 7x7 neighbourhoods per image fully inside it form 7*7*C descriptors; each set
is normalised per colour channel by its own mean and std; 4 x 128 random unit directions; the
distance is the mean absolute difference of the sorted projections, reported x1e3 per level.

Memory does not grow with the image count: descriptors are streamed to a temporary memory-mapped
file, per-channel statistics are accumulated on the way, the normalisation is folded into the
directions, and the projections are made, sorted and compared a few directions at a time: memory is
the descriptor chunk plus 2 x descriptors x ``dirs_at_once`` floats for the sort (67 MB for 16,384
images), whatever the image count's effect on disk (147 floats per descriptor in a temporary file).
"""
from __future__ import annotations

import math
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from ..util.errors import UsageError
from .base import Metric

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :] * gain).to(x)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")                    # mirror borders
    return F.conv2d(x, k.expand(c, 1, 5, 5), groups=c)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * w, dtype=x.dtype, device=x.device)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[full-resolution band, ..., coarsest low-pass]; the bands add back up to x."""
    pyramid = [x]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def levels_for(resolution: int, min_res: int = 16) -> int:
    return max(1, int(math.log2(resolution)) - int(math.log2(min(min_res, resolution))) + 1)


def descriptors(band: torch.Tensor, per_image: int, gen: torch.Generator, size: int = 7) -> torch.Tensor:
    """[N * per_image, C * size * size] random neighbourhoods lying fully inside each image."""
    n, c, h, w = band.shape
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=gen)
    patches = band.unfold(2, size, 1).unfold(3, size, 1)          # [N, C, H-6, W-6, 7, 7]
    img = torch.arange(n)[:, None].expand(n, per_image)
    picked = patches[img, :, ys, xs]                               # [N, per_image, C, 7, 7]
    return picked.reshape(n * per_image, c * size * size)


class _DescriptorStore:
    """Descriptors of one image set at one level, appended to a file, with running per-channel moments."""

    def __init__(self, path: str, channels: int):
        self.path, self.channels = path, channels
        self.file = open(path, "wb")
        self.count, self.dim = 0, 0
        self.s1, self.s2 = np.zeros(channels), np.zeros(channels)
        self.mm = None

    def add(self, d: torch.Tensor) -> None:
        a = d.numpy().astype(np.float32)
        self.file.write(a.tobytes())
        self.count, self.dim = self.count + len(a), a.shape[1]
        per_c = a.reshape(len(a), self.channels, -1).astype(np.float64)
        self.s1 += per_c.sum(axis=(0, 2))
        self.s2 += np.square(per_c).sum(axis=(0, 2))

    def finish(self) -> "_DescriptorStore":
        self.file.close()
        self.mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.count, self.dim))
        return self

    def sorted_projections(self, dirs: np.ndarray, chunk: int = 65536, normalize: bool = True) -> np.ndarray:
        """Sorted projections of the per-channel normalised descriptors onto ``dirs`` [dim, k];
        (d - mean) / std is folded into the directions so the descriptors are read as stored."""
        n = self.count * self.dim / self.channels
        mean = self.s1 / n if normalize else np.zeros(self.channels)
        std = np.sqrt(np.maximum(self.s2 / n - mean ** 2, 1e-12)) if normalize else np.ones(self.channels)
        per = self.dim // self.channels
        inv = np.repeat(1.0 / std, per)
        w = (dirs * inv[:, None]).astype(np.float32)
        offset = (np.repeat(mean, per) * inv) @ dirs
        out = np.empty((self.count, dirs.shape[1]), dtype=np.float32)
        for i in range(0, self.count, chunk):
            out[i:i + chunk] = self.mm[i:i + chunk] @ w
        out -= offset.astype(np.float32)
        out.sort(axis=0)
        return out


def sliced_wasserstein(a: _DescriptorStore, b: _DescriptorStore, rng: np.random.Generator,
                       repeats: int = 4, dirs_per_repeat: int = 128, dirs_at_once: int = 8,
                       normalize: bool = True) -> float:
    """Mean over 4 x 128 random unit directions of the mean |sorted(proj a) - sorted(proj b)|."""
    if a.count != b.count:
        raise ValueError("both image sets must give the same number of descriptors (same image count)")
    dists = []
    for _ in range(repeats):
        dirs = rng.standard_normal((a.dim, dirs_per_repeat))
        dirs /= np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))
        for j in range(0, dirs_per_repeat, dirs_at_once):
            d = dirs[:, j:j + dirs_at_once]
            dists.append(np.abs(a.sorted_projections(d, normalize=normalize)
                                - b.sorted_projections(d, normalize=normalize)).mean(axis=0))
    return float(np.concatenate(dists).mean())


class SWDAccumulator:
    """Two image sets added batch by batch (``add(0, batch)`` / ``add(1, batch)``), then ``result()``.

    Patch positions come from one generator per set, seeded by ``(seed, set)``, so the numbers depend
    only on the images, their order and the seed (not on how they were batched).
    """

    def __init__(self, folder: str, seed: int = 0, per_image: int = 128, min_res: int = 16):
        self.folder, self.seed, self.per_image, self.min_res = folder, seed, per_image, min_res
        self.stores: list[list[_DescriptorStore] | None] = [None, None]
        self.res: list[int | None] = [None, None]
        self.gens = [torch.Generator().manual_seed(seed * 2 + s) for s in (0, 1)]

    def add(self, which: int, x: torch.Tensor) -> None:
        x = x.float().cpu()
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"SWD uses 7x7 neighbourhoods: the images must be at least 8x8, got {x.shape[-1]}x{x.shape[-2]}")
        if self.stores[which] is None:
            self.res[which] = x.shape[-1]
            levels = levels_for(x.shape[-1], self.min_res)
            self.stores[which] = [_DescriptorStore(f"{self.folder}/{which}-{i}.f32", x.shape[1]) for i in range(levels)]
        elif x.shape[-1] != self.res[which]:
            raise ValueError("all images of a set must have the same resolution")
        bands = laplacian_pyramid(x, len(self.stores[which]))
        for j in range(len(x)):                 # image by image: the draws do not depend on the batching
            for store, band in zip(self.stores[which], bands):
                store.add(descriptors(band[j:j + 1], self.per_image, self.gens[which]))

    def result(self, repeats: int = 4, dirs_per_repeat: int = 128) -> dict:
        if self.stores[0] is None or self.stores[1] is None:
            raise ValueError("no images given")
        if self.res[0] != self.res[1]:
            raise ValueError(f"the two image sets differ in resolution ({self.res[0]} vs {self.res[1]})")
        rng = np.random.default_rng(self.seed)
        levels = {self.res[0] >> i: 1e3 * sliced_wasserstein(sa.finish(), sb.finish(), rng, repeats, dirs_per_repeat)
                  for i, (sa, sb) in enumerate(zip(*self.stores))}
        return {"levels": levels, "avg": float(np.mean(list(levels.values())))}


def swd(images_a, images_b, seed: int = 0, per_image: int = 128, min_res: int = 16,
        repeats: int = 4, dirs_per_repeat: int = 128) -> dict:
    """SWD x1e3 per pyramid level and their average between two image sets.

    ``images_a``/``images_b``: tensors [N, C, R, R] (any scale: descriptors are normalised) or
    iterables of such batches, the same number of images in both. Returns
    {'levels': {resolution: swd x1e3}, 'avg': mean of the levels}.
    """
    with tempfile.TemporaryDirectory() as folder:
        acc = SWDAccumulator(folder, seed, per_image, min_res)
        for which, images in enumerate((images_a, images_b)):
            for x in ([images] if torch.is_tensor(images) else images):
                acc.add(which, x)
        return acc.result(repeats, dirs_per_repeat)


class SWDMetric(Metric):
    """The paper's sliced Wasserstein distance of Laplacian-pyramid patches (x1e3 per level)."""
    name, title, label, min_resolution = "swd", "SWD x1e3 (avg of levels)", "SWD x1e3", 8

    def start(self, ctx):
        if ctx.num_real < ctx.opts.num:
            raise UsageError(f"SWD compares equal counts: the data has {ctx.num_real} images, fewer than "
                             f"num={ctx.opts.num}; lower the number of images")
        return SWDAccumulator(ctx.folder, ctx.opts.seed)

    def add(self, acc, batch) -> None:
        gathered = batch.gathered()               # every rank takes part; rank 0 holds them
        if batch.is_main:
            acc.add(0, gathered)

    def finish(self, acc, ctx):
        if not ctx.is_main:
            return None
        for i in range(0, len(ctx.real_order), ctx.opts.batch):
            acc.add(1, ctx.real_fn(ctx.real_order[i:i + ctx.opts.batch]))
        return acc.result()

    def curves(self, value) -> dict:
        return {"swd": float(value["avg"])}

    def scalars(self, value) -> dict:
        return {**{f"swd/{res}": float(v) for res, v in value["levels"].items()}, "swd/avg": float(value["avg"])}

    def lines(self, result: dict) -> list[str]:
        levels = result["swd"]["levels"]
        return ["SWD x1e3  " + "  ".join(f"{res:>7}" for res in levels) + "      avg",
                "          " + "  ".join(f"{v:7.2f}" for v in levels.values()) + f"  {result['swd']['avg']:7.2f}"]

    def short(self, value) -> str:
        levels = ", ".join(f"{r}: {v:.2f}" for r, v in value["levels"].items())
        return f"swd {value['avg']:.2f} ({levels})"
