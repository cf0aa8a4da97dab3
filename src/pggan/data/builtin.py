"""A procedural image dataset that ships with pggan: no download, deterministic from a seed.

``shapes``: a large shape (disc, rounded square or triangle; the coarse structure) with two "eyes"
and a mouth inside it (parts), dark pupils and a thin outline (fine edges), over a two-colour
gradient. Images are rendered analytically at any power-of-two resolution with anti-aliased edges,
so the same index gives the same picture at every resolution, and progressive growing has something
to learn at each scale: colours and silhouettes at 4-8 px, parts at 16-32 px, edges above.
"""
from __future__ import annotations

import math

import numpy as np

from .base import DataError

BUILTIN = ("shapes",)
SHAPE_KINDS = ("disc", "square", "triangle")


def check_builtin(name: str) -> None:
    if name not in BUILTIN:
        raise DataError(f"unknown builtin dataset '{name}'; available: {', '.join('builtin:' + b for b in BUILTIN)}")


def _aa(d: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a signed distance field (negative inside), anti-aliased over one pixel."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _sd_shape(kind: int, u: np.ndarray, v: np.ndarray, size: float, round_r: float) -> np.ndarray:
    if kind == 0:                                   # disc
        return np.sqrt(u * u + v * v) - size
    if kind == 1:                                   # rounded square
        qx, qy = np.abs(u) - (size - round_r), np.abs(v) - (size - round_r)
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0) - round_r
    # equilateral triangle pointing up (v grows downwards); exact signed distance
    r, k = size * 1.15, math.sqrt(3.0)
    px, py = np.abs(u) - r, -v + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.sqrt(px * px + py * py) * np.sign(py)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def shape_kind(seed: int, index: int) -> int:
    """The index into SHAPE_KINDS of image ``index``'s shape: the first draw of its generator."""
    return int(np.random.default_rng([seed, index]).integers(0, len(SHAPE_KINDS)))


def render_shape(seed: int, index: int, resolution: int, channels: int = 3, rounding: float = 0.0) -> np.ndarray:
    """One image as uint8 [channels, resolution, resolution]. ``rounding`` > 0 rounds the shape's corners
    by that share of its size: a morph towards a disc that the data set never shows (tools/shape_score.py)."""
    rng = np.random.default_rng([seed, index])
    kind = int(rng.integers(0, len(SHAPE_KINDS)))
    cx, cy = rng.uniform(0.38, 0.62, size=2)
    size = rng.uniform(0.24, 0.34)
    angle = rng.uniform(-0.35, 0.35)
    bg_top, bg_bot = _hsv(rng.uniform(), 0.35, 0.9), _hsv(rng.uniform(), 0.5, 0.45)
    body = _hsv(rng.uniform(), rng.uniform(0.55, 0.95), rng.uniform(0.6, 1.0))
    eye_dx, eye_y, eye_r = rng.uniform(0.32, 0.45), rng.uniform(-0.3, -0.1), rng.uniform(0.14, 0.2)
    gaze = rng.uniform(-0.5, 0.5, size=2)
    mouth_w, mouth_y = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.45)

    px = 1.0 / resolution
    t = (np.arange(resolution, dtype=np.float32) + 0.5) * px
    y, x = np.meshgrid(t, t, indexing="ij")                               # [R, R] each
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * ca + (y - cy) * sa, -(x - cx) * sa + (y - cy) * ca  # shape-local coordinates

    img = bg_top[:, None, None] * (1 - y) + bg_bot[:, None, None] * y     # [3, R, R]
    core = size * (1.0 - rounding)
    d_body = _sd_shape(kind, u, v, core, 0.3 * core) - (size - core)
    shade = 1.0 - 0.25 * np.clip((u + v) / size, -1, 1)                  # soft lighting inside the body
    img = _over(img, body[:, None, None] * shade, _aa(d_body, px))
    outline_w = max(0.012, 0.6 * px)
    img = _over(img, np.zeros(3, np.float32)[:, None, None], _aa(np.abs(d_body) - outline_w, px))
    for side in (-1, 1):
        ex, ey = side * eye_dx * size, eye_y * size
        d_eye = np.sqrt((u - ex) ** 2 + (v - ey) ** 2) - eye_r * size
        img = _over(img, np.ones(3, np.float32)[:, None, None], _aa(d_eye, px))
        pxx, pyy = ex + gaze[0] * 0.45 * eye_r * size, ey + gaze[1] * 0.45 * eye_r * size
        d_pupil = np.sqrt((u - pxx) ** 2 + (v - pyy) ** 2) - 0.45 * eye_r * size
        img = _over(img, np.full(3, 0.08, np.float32)[:, None, None], _aa(d_pupil, px))
    d_mouth = np.maximum(np.abs(u) - mouth_w * size, np.abs(v - mouth_y * size) - 0.06 * size)
    img = _over(img, np.array([0.45, 0.05, 0.1], np.float32)[:, None, None], _aa(d_mouth, px))
    if channels == 1:
        img = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _over(dst: np.ndarray, color: np.ndarray, cover: np.ndarray) -> np.ndarray:
    return dst + (color - dst) * cover[None]


def render_builtin(name: str, count: int, resolution: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """``count`` images of builtin dataset ``name`` as uint8 [count, channels, R, R]."""
    check_builtin(name)
    out = np.empty((count, channels, resolution, resolution), dtype=np.uint8)
    for i in range(count):
        out[i] = render_shape(seed, i, resolution, channels)
    return out
