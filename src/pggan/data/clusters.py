"""Labels for images that have none: k-means clusters of their coarse colour layout (beyond the paper).

A GAN conditioned on such clusters (self-conditioning: Liu et al., CVPR 2020, "Diverse Image Generation
via Self-Conditioned GANs"; they cluster D's features, we cluster the 8x8 images, which needs no trained
network) gets from D's AC-GAN term a push to draw each cluster's kind of image, instead of one G that
has to cover every kind at once. The clustering is a pure function of the images, K and the seed, so
every process of a run and a resumed run compute the same labels.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .base import DataError, ImageSet

FEATURE_RES = 8            # the level clustered: colours and coarse layout, not detail
FIT_MAX = 50_000           # images the centres are fitted on; every image is then assigned


def _features(images: ImageSet) -> np.ndarray:
    level = images.levels[min(FEATURE_RES, max(images.levels))]
    return np.asarray(level, dtype=np.float32).reshape(len(level), -1) / 255.0     # [N, C*r*r]


def _nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest centre, squared distance to it) for every row of x."""
    c2 = (centres ** 2).sum(1)
    idx, dist = [], []
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk]
        d = (xi ** 2).sum(1, keepdims=True) - 2.0 * xi @ centres.T + c2          # [n, K]
        j = d.argmin(1)
        idx.append(j)
        dist.append(np.maximum(d[np.arange(len(j)), j], 0.0))
    return np.concatenate(idx), np.concatenate(dist)


def _lloyd(x: np.ndarray, centres: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lloyd's iterations until the assignment stops changing: (centres, assignment, squared distances).
    An emptied cluster is re-seeded at the point furthest from its centre."""
    assign = None
    for _ in range(iters):
        new, dist = _nearest(x, centres)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(len(centres)):
            members = x[assign == j]
            if len(members):
                centres[j] = members.mean(0)
            else:
                far = int(dist.argmax())
                centres[j], dist[far] = x[far], 0.0
    return centres, assign, dist


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 50, rounds: int = 4) -> np.ndarray:
    """Centres [k, D] by k-means++ seeding and Lloyd's iterations. A cluster that ends with under a tenth
    of the mean cluster size (typically an outlier that k-means++ drew as a seed, keeping a cluster of
    its own while two groups share one) is re-seeded at a random member of the cluster with the largest
    squared error, and Lloyd's iterations run again (at most ``rounds`` times in all)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = dist / dist.sum() if dist.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
        dist = np.minimum(dist, ((x - centres[-1]) ** 2).sum(1))
    centres = np.stack(centres)
    min_size = int(np.ceil(len(x) / k / 10))
    for _ in range(rounds):
        centres, assign, dist = _lloyd(x, centres, iters)
        sizes = np.bincount(assign, minlength=k)
        error = np.bincount(assign, weights=dist, minlength=k)
        small = np.flatnonzero(sizes < min_size)
        if not len(small):
            break
        for j in small:
            worst = int(error.argmax())
            centres[j] = x[rng.choice(np.flatnonzero(assign == worst))]
            error[worst] = 0.0        # the next small cluster splits another one
    return centres


def fit_centres(images: ImageSet, k: int, seed: int) -> np.ndarray:
    """The centres [k, D] (float32) of k clusters of the images, in class order: class 0 is the largest.
    Assigning the same images to them (:func:`assign`) gives back the clustering exactly."""
    if not 2 <= k <= len(images):
        raise DataError(f"clusters={k}: need at least 2 clusters and no more than the {len(images)} images")
    x = _features(images)
    fit = x if len(x) <= FIT_MAX else x[np.random.default_rng(seed).choice(len(x), FIT_MAX, replace=False)]
    centres = kmeans(fit, k, seed)
    labels, _ = _nearest(x, centres)
    by_size = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    return np.ascontiguousarray(centres[by_size], dtype=np.float32)


def assign(images: ImageSet, centres: np.ndarray) -> np.ndarray:
    """[N] int64: the class (nearest centre) of every image; DataError when the images are not of the
    size the centres were fitted on."""
    x = _features(images)
    centres = np.asarray(centres, np.float32)
    if centres.ndim != 2 or centres.shape[1] != x.shape[1]:
        raise DataError(f"the saved cluster centres have {centres.shape[-1]} values, these images' "
                        f"{FEATURE_RES}x{FEATURE_RES} levels {x.shape[1]}: they were fitted on images of other channels")
    return _nearest(x, centres)[0].astype(np.int64)


def cluster_labels(images: ImageSet, k: int, seed: int) -> np.ndarray:
    """[N] int64 cluster of every image, numbered by size (0 = the largest cluster)."""
    return assign(images, fit_centres(images, k, seed))


def with_labels(images: ImageSet, labels: np.ndarray, k: int) -> ImageSet:
    """The same images, labelled by ``labels`` (k clusters)."""
    sizes = np.bincount(labels, minlength=k)
    return dataclasses.replace(images, labels=labels, label_size=k,
                               description=f"{images.description}, {k} clusters of {sizes.min()}-{sizes.max()} images")


def with_clusters(images: ImageSet, k: int, seed: int) -> ImageSet:
    """The same images, labelled by their k clusters."""
    return with_labels(images, cluster_labels(images, k, seed), k)
