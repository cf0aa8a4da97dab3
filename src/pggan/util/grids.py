"""Writing image grids and single images (uint8 PNG), atomically."""
from __future__ import annotations

import io

import numpy as np
import torch

from .files import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C]."""
    x = (images.detach().float().cpu() + 1.0) * 127.5
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(images: np.ndarray, cols: int, size: int | None = None) -> np.ndarray:
    """uint8 [N, H, W, C] -> one [rows*S, cols*S, C] image; images nearest-upsampled to ``size`` first."""
    n, h, w, c = images.shape
    if size and size != h:
        f = size // h
        images = images.repeat(f, axis=1).repeat(f, axis=2)
        h, w = images.shape[1:3]
    rows = -(-n // cols)
    pad = rows * cols - n
    if pad:
        images = np.concatenate([images, np.zeros((pad, h, w, c), images.dtype)])
    grid = images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)   # [rows, H, cols, W, C]
    return grid.reshape(rows * h, cols * w, c)


def sample_indices(total: int, count: int, seed: int) -> np.ndarray:
    """Which images a grid of ``count`` reals shows: a seeded random sample, in data order (the first
    images of a folder sorted by name are often alike: one icon theme, one emoji's skin tones)."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] (C = 1 or 3) as a PNG file's bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str, image: np.ndarray) -> None:
    data = png_bytes(image)
    atomic_write(path, lambda f: f.write(data))
