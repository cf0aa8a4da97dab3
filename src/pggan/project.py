"""Projection: the latent z whose generated image is closest to a given image.

Several random starts (the closest one is kept), then Adam on z. The generator normalises its latent
(pixel norm), so only z's direction matters: z is renormalised onto the sphere of radius sqrt(d) after
every step. Optionally a noise on z that decays to 0 over the first three quarters of the steps (as
StyleGAN2's projector does) helps to leave a poor basin. The distance is a pixel term (mean squared error
in [0, 1]) plus 1 - MS-SSIM, and with an Inception weights file the squared distance of the two images'
Inception pool features.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .metrics.msssim import ms_ssim
from .util.errors import UsageError
from .util.files import atomic_write
from .util.grids import make_grid, save_png, to_uint8


@dataclass
class ProjectOptions:
    steps: int = 300
    lr: float = 0.05
    starts: int = 16            # random latents tried first; the closest is optimised
    noise: float = 0.05         # initial latent noise (0 = none), ramped down to 0 at 3/4 of the steps
    pixel: float = 1.0          # weight of the pixel term
    msssim: float = 1.0         # weight of 1 - MS-SSIM (images of 16x16 or more)
    inception: str | None = None  # weights file: adds the Inception-feature distance
    feature: float = 1.0        # its weight
    seed: int = 0
    snapshots: int = 8          # images of the optimisation kept for the progress strip

    def validate(self) -> "ProjectOptions":
        if self.steps < 1 or self.starts < 1 or self.lr <= 0 or self.noise < 0:
            raise UsageError("projection needs steps >= 1, starts >= 1, lr > 0 and noise >= 0")
        if self.snapshots < 2:
            raise UsageError("the progress strip needs at least 2 snapshots")
        return self


@dataclass
class Projection:
    z: np.ndarray                       # [z_dim], on the sphere of radius sqrt(z_dim)
    image: np.ndarray                   # uint8 [H, W, C]: G(z)
    distances: dict                     # the final terms and their weighted total
    terms: list[str]                    # which terms were used
    target: np.ndarray                  # uint8 [C, H, W]: the image as projected (at G's resolution)
    history: list[tuple[int, float]] = field(default_factory=list)      # (step, total distance)
    frames: list[np.ndarray] = field(default_factory=list)             # uint8 [H, W, C] snapshots
    label: int | None = None            # a conditional generator's class the projection kept


def _on_sphere(z: torch.Tensor) -> torch.Tensor:
    return z * math.sqrt(z.shape[-1]) / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class Distance:
    """The weighted distance between generated images ([N, C, H, W] in about [-1, 1]) and one target."""

    def __init__(self, target: torch.Tensor, opts: ProjectOptions, device):
        self.opts, self.target = opts, target.to(device)                     # [1, C, H, W] in [-1, 1]
        self.use_msssim = opts.msssim > 0 and min(target.shape[-2:]) >= 16
        self.inception = None
        if opts.inception:
            from .metrics.inception import load_inception
            self.inception = load_inception(opts.inception, device)
            self.target_features = self.inception(self._pixels(self.target))[0].detach()
        self.terms = ["pixel"] + (["msssim"] if self.use_msssim else []) + (["inception"] if self.inception else [])

    @staticmethod
    def _pixels(x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) * 127.5).clamp(0, 255)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Per image: the weighted total [N] and each term [N]."""
        t = self.target.expand_as(x)
        parts = {"pixel": ((x - t) / 2).square().flatten(1).mean(1)}
        total = self.opts.pixel * parts["pixel"]
        if self.use_msssim:
            parts["msssim"] = (1 - ms_ssim(self._pixels(x), self._pixels(t))).to(x.dtype)   # 5 scales: 16x16 and up
            total = total + self.opts.msssim * parts["msssim"]
        if self.inception is not None:
            f = self.inception(self._pixels(x))[0]
            parts["inception"] = (f - self.target_features).square().sum(1)
            total = total + self.opts.feature * parts["inception"]
        return total, parts


def project(G, z_dim: int, target: np.ndarray, opts: ProjectOptions, device="cpu", labels=None,
            progress=None) -> Projection:
    """``G(z, labels)``: images [N, C, H, W] in [-1, 1]; ``target``: uint8 [C, H, W] at G's resolution.
    ``labels``: None, one class vector [1, C] for every start, or one per start [starts, C] (the closest
    start's class is kept). ``progress(step)`` is called after every step."""
    opts.validate()
    device = torch.device(device)
    t = torch.from_numpy(np.asarray(target, np.float32))[None] / 127.5 - 1
    dist = Distance(t, opts, device)
    g = torch.Generator().manual_seed(opts.seed)
    with torch.no_grad():
        starts = _on_sphere(torch.randn(opts.starts, z_dim, generator=g)).to(device)
        if labels is not None:
            labels = labels.to(device).expand(opts.starts, -1) if len(labels) == 1 else labels.to(device)
        best = int(torch.argmin(torch.cat([dist(G(starts[i:i + 8], _rows(labels, i, i + 8)))[0]
                                           for i in range(0, len(starts), 8)])))
    z = starts[best:best + 1].clone().requires_grad_(True)
    labels = _rows(labels, best, best + 1)
    adam = torch.optim.Adam([z], lr=opts.lr, betas=(0.9, 0.999))
    history, frames = [], []
    keep = set(np.linspace(0, opts.steps, opts.snapshots).round().astype(int).tolist())
    for step in range(opts.steps + 1):
        ramp = max(0.0, 1.0 - step / (0.75 * opts.steps)) ** 2
        z_in = z + opts.noise * ramp * torch.randn(z.shape, generator=g).to(device) if step < opts.steps else z
        x = G(_on_sphere(z_in), labels)
        total, parts = dist(x)
        history.append((step, float(total.detach())))
        if step in keep:
            frames.append(_uint8(x.detach()))
        if step == opts.steps:
            break
        adam.zero_grad(set_to_none=True)
        total.sum().backward()
        adam.step()
        with torch.no_grad():
            z.copy_(_on_sphere(z))
        if progress is not None:
            progress(step + 1)
    distances = {k: float(v.detach()) for k, v in parts.items()}
    distances["total"] = float(total.detach())
    return Projection(_on_sphere(z.detach())[0].cpu().numpy(), frames[-1], distances, dist.terms,
                      np.asarray(target, np.uint8), history, frames,
                      None if labels is None else int(labels[0].argmax()))


def load_target(image, resolution: int, channels: int) -> np.ndarray:
    """A path, PIL image or uint8 array [H, W, C] -> uint8 [C, R, R], resized as ``pggan dataset create``
    does (centre crop to a square, Lanczos, transparency on white)."""
    from .data.create import BadImage, ConvertOptions, prepare

    if isinstance(image, (str, os.PathLike)):
        image = os.fspath(image)
        try:
            with open(image, "rb") as f:
                payload = f.read()
        except OSError as e:
            raise UsageError(f"cannot read the image '{image}': {e.strerror}") from None
    elif hasattr(image, "save"):                               # a PIL image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        payload = buf.getvalue()
    else:
        payload = np.asarray(image, dtype=np.uint8)
        payload = payload[..., None] if payload.ndim == 2 else payload
        if payload.ndim != 3 or payload.shape[2] not in (1, 3, 4):
            raise UsageError(f"an image array must be [H, W] or [H, W, C] with 1, 3 or 4 channels, got "
                             f"{tuple(payload.shape)}")
    try:
        return prepare(payload, ConvertOptions(resolution=resolution, channels=channels, small="upscale"))
    except BadImage as e:
        raise UsageError(f"'{image if isinstance(image, str) else 'the image'}' cannot be used: {e}") from None


def write_projection(p: Projection, outdir: str) -> dict:
    """proj.png, target.png, z.npy, progress.png (snapshots left to right, the target last),
    distances.json and, for a conditional generator, class.npy (the class z goes with) in ``outdir``;
    returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = {k: os.path.join(outdir, n) for k, n in (("proj", "proj.png"), ("target", "target.png"), ("z", "z.npy"),
                                                      ("progress", "progress.png"), ("distances", "distances.json"))}
    hwc = p.target.transpose(1, 2, 0)
    save_png(paths["proj"], p.image)
    save_png(paths["target"], hwc)
    save_png(paths["progress"], make_grid(np.stack(p.frames + [hwc]), len(p.frames) + 1))
    _save_npy(paths["z"], p.z.astype(np.float32))
    if p.label is not None:
        paths["class"] = os.path.join(outdir, "class.npy")
        _save_npy(paths["class"], np.int64(p.label))
    record = {"terms": p.terms, "class": p.label, "final": p.distances, "initial_total": p.history[0][1],
              "history": [{"step": s, "total": d} for s, d in p.history[:: max(1, len(p.history) // 50)]]}
    atomic_write(paths["distances"], lambda f: f.write(json.dumps(record, indent=1).encode()))
    return paths


def _save_npy(path: str, array) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _rows(labels, lo: int, hi: int):
    return None if labels is None else labels[lo:hi]


def _uint8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x.float().cpu())[0]
