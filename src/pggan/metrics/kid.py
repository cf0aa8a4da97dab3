"""Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared MMD between
real and generated Inception features with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets of equal size (which bounds the cost and gives the usual numbers).

Unlike FID it has an unbiased estimator, so its value does not depend on the sample size.
"""
from __future__ import annotations

import numpy as np
import torch

from ..util.errors import UsageError
from .base import Metric


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j) - 2/m^2 sum_{i,j} k(x_i, y_j)."""
    x, y, m = x.double(), y.double(), len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(off - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> float:
    """Mean of ``subsets`` unbiased MMD^2 estimates, each on ``subset_size`` real and as many fake
    features drawn without replacement (fewer when a set is smaller). Features are [N, D]."""
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = fake[torch.from_numpy(rng.choice(len(fake), m, replace=False))]
        y = real[torch.from_numpy(rng.choice(len(real), m, replace=False))]
        total += mmd2_unbiased(x, y)
    return total / subsets


class KIDMetric(Metric):
    """Kernel Inception distance (x1e3) between the fakes' and the reals' pool3 features."""
    name, title, label = "kid", "KID x1e3", "KID x1e3"

    def check(self, opts) -> None:
        if opts.kid_subsets < 1 or opts.kid_subset_size < 2:
            raise UsageError("KID needs kid_subsets >= 1 and kid_subset_size >= 2")

    def networks(self, opts) -> set:
        return {"inception"}

    def matrices(self, opts) -> set:
        return {"inception"}

    def finish(self, state, ctx):
        real, fake = ctx.real_matrix("inception"), ctx.fake_matrix("inception")
        if not ctx.is_main:
            return None
        o = ctx.opts
        return 1e3 * kernel_inception_distance(real, fake, o.kid_subsets, o.kid_subset_size, o.seed)
