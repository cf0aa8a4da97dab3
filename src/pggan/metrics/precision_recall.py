"""Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
around its feature vectors, each reaching to its k-th nearest neighbour in the same set. Precision is
the share of generated samples inside the real manifold (are the images realistic?), recall the share of
real samples inside the generated one (is the data's variety covered?).

Distances are computed in blocks, so memory stays bounded (``block_elems`` distances at once) whatever
the number of images.
"""
from __future__ import annotations

import torch

from ..util.errors import UsageError
from .base import Metric

BLOCK_ELEMS = 1 << 24


def _rows(n_rows: int, n_cols: int, block_elems: int) -> int:
    return max(1, block_elems // max(1, n_cols))


def knn_radii(x: torch.Tensor, k: int = 3, block_elems: int = BLOCK_ELEMS) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per set, got {len(x)}")
    out = torch.empty(len(x), dtype=x.dtype)
    step = _rows(len(x), len(x), block_elems)
    for i in range(0, len(x), step):
        d = torch.cdist(x[i:i + step], x)                     # [b, N]; the row itself is at distance 0
        out[i:i + step] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def inside_share(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, block_elems: int = BLOCK_ELEMS) -> float:
    """Share of ``query`` rows within the ball of at least one ``ref`` row."""
    inside = 0
    step = _rows(len(query), len(ref), block_elems)
    for i in range(0, len(query), step):
        d = torch.cdist(query[i:i + step], ref)              # [b, M]
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / len(query)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, block_elems: int = BLOCK_ELEMS) -> dict:
    """{'precision', 'recall'} of fake against real features ([N, D] each)."""
    real, fake = real.float(), fake.float()
    real_r, fake_r = knn_radii(real, k, block_elems), knn_radii(fake, k, block_elems)
    return {"precision": inside_share(fake, real, real_r, block_elems),
            "recall": inside_share(real, fake, fake_r, block_elems)}


class PRMetric(Metric):
    """Improved precision and recall of the fakes against the reals (Inception or VGG16 features)."""
    name, title = "pr", "precision / recall"

    def check(self, opts) -> None:
        if not 1 <= opts.pr_k < opts.num:
            raise UsageError(f"precision/recall needs 1 <= k < num, got k={opts.pr_k}, num={opts.num}")

    def networks(self, opts) -> set:
        return {opts.pr_features}

    def matrices(self, opts) -> set:
        return {opts.pr_features}

    def finish(self, state, ctx):
        kind = ctx.opts.pr_features
        real, fake = ctx.real_matrix(kind), ctx.fake_matrix(kind)
        if not ctx.is_main:
            return None
        return dict(precision_recall(real, fake, ctx.opts.pr_k), k=ctx.opts.pr_k, features=kind)

    def curves(self, value) -> dict:
        return {"precision": float(value["precision"]), "recall": float(value["recall"])}

    def lines(self, result: dict) -> list[str]:
        pr = result["pr"]
        return [f"precision {pr['precision']:.4f}   recall {pr['recall']:.4f}   (k={pr['k']}, {pr['features']} features)"]

    def short(self, value) -> str:
        return f"precision {value['precision']:.3f} recall {value['recall']:.3f}"
