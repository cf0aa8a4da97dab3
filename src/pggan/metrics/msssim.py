"""Multi-scale SSIM (Wang et al. 2003) as the paper uses it to measure variation among generated images:
5 scales, weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333], Gaussian window 11 with sigma 1.5 ('valid'
filtering, window shrunk to the image at the coarsest scales), K1 = 0.01, K2 = 0.03, 8-bit range, and
2x2 box downsampling between scales."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..util.errors import UsageError
from .base import Metric

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    radius = size // 2
    offset = 0.5 if size % 2 == 0 else 0.0
    r = torch.arange(-radius, radius + (0 if size % 2 == 0 else 1), dtype=torch.float64) + offset
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, max_val: float, filter_size: int, sigma: float, k1: float, k2: float):
    """Per-image SSIM and contrast-structure terms for [N, C, H, W] float64 images."""
    n, c, h, w = x.shape
    size = min(filter_size, h, w)
    win = gaussian_window(size, size * sigma / filter_size).to(x)[None, None].expand(c, 1, size, size)

    def filt(t):
        return F.conv2d(t, win, groups=c)                       # 'valid'

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x ** 2
    syy = filt(y * y) - mu_y ** 2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    v1, v2 = 2.0 * sxy + c2, sxx + syy + c2
    ssim = ((2.0 * mu_x * mu_y + c1) * v1) / ((mu_x ** 2 + mu_y ** 2 + c1) * v2)
    return ssim.mean(dim=(1, 2, 3)), (v1 / v2).mean(dim=(1, 2, 3))


def _down(t: torch.Tensor) -> torch.Tensor:
    h, w = t.shape[-2:]
    if h % 2 or w % 2:
        t = F.pad(t, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(t, 2)


def ms_ssim(x, y, max_val: float = 255.0, filter_size: int = 11, sigma: float = 1.5,
            k1: float = 0.01, k2: float = 0.03, weights=WEIGHTS) -> torch.Tensor:
    """MS-SSIM of each pair (x[i], y[i]); images [N, C, H, W] in [0, max_val]. Returns [N] float64."""
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    if x.shape != y.shape:
        raise ValueError(f"MS-SSIM needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mcs = []
    for i in range(len(weights)):
        ssim, cs = _ssim_cs(x, y, max_val, filter_size, sigma, k1, k2)
        mcs.append(cs)
        if i < len(weights) - 1:
            x, y = _down(x), _down(y)
    w = torch.tensor(weights, dtype=torch.float64)
    cs_term = torch.stack(mcs[:-1], dim=1).clamp(min=0) ** w[:-1]
    return cs_term.prod(dim=1) * ssim.clamp(min=0) ** w[-1]


def msssim_among(images, pairs: int = 10000, seed: int = 0, batch: int = 256) -> float:
    """Mean MS-SSIM of ``pairs`` random distinct pairs from ``images`` (uint8-range [N, C, H, W])."""
    images = torch.as_tensor(images)
    n = len(images)
    if n < 2:
        raise ValueError("MS-SSIM among images needs at least 2 images")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n                        # never the same image twice
    total = 0.0
    for i in range(0, pairs, batch):
        total += float(ms_ssim(images[a[i:i + batch]], images[b[i:i + batch]]).sum())
    return total / pairs


class MSSSIMMetric(Metric):
    """Mean MS-SSIM of pairs (2k, 2k+1) of fakes num .. num + 2 * pairs - 1: the variation among them."""
    name, title, label, in_pass, extra_keys = "msssim", "MS-SSIM", "MS-SSIM", False, ("msssim_real",)

    def check(self, opts) -> None:
        if opts.pairs < 1:
            raise UsageError("MS-SSIM needs pairs >= 1")

    def own_images(self, opts) -> int:
        return 2 * opts.pairs

    def finish(self, state, ctx):
        o = ctx.opts
        total = torch.zeros(1, dtype=torch.float64)
        for _, _, mlo, mhi in ctx.shards(o.pairs):
            if mhi > mlo:
                x = ctx.fake_fn(range(o.num + 2 * mlo, o.num + 2 * mhi))
                total += ms_ssim(x[0::2], x[1::2]).sum()
        return float(ctx.sum(total)) / o.pairs

    def lines(self, result: dict) -> list[str]:
        real = f"   (real images: {result['msssim_real']:.4f})" if "msssim_real" in result else ""
        return [f"MS-SSIM   {result['msssim']:.4f}{real}"]

    def short(self, value) -> str:
        return f"msssim {value:.4f}"
