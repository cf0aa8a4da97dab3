"""Differentiable augmentation of every image D sees, real and generated alike (beyond the paper).

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training": the same random
transforms (translation, cutout, colour) are applied to the real images and to G's output before D,
so D cannot tell them apart by the transforms, and G's gradients flow back through them; G is never
asked to produce the transformed images. With ``adaptive``, the probability ``p`` of each transform
follows an overfitting heuristic as in ADA (Karras et al. 2020): up when D separates the reals from
the fakes too well, down otherwise. Images are [N, C, H, W] in about [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125      # shift by up to 1/8 of the image size (Zhao et al.)
CUTOUT_RATIO = 0.5             # erase a square of half the image size (Zhao et al.)


def _applied(x: torch.Tensor, p: float) -> torch.Tensor:
    """[N, 1, 1, 1] float mask: 1 for the images a transform applies to (each with probability p)."""
    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)


def color(x: torch.Tensor, p: float) -> torch.Tensor:
    """Brightness, saturation and contrast, each drawn per image."""
    n = x.shape[0]
    out = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = out.mean(dim=1, keepdim=True)
        out = (out - mean) * (2.0 * torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)) + mean
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean
    return x + _applied(x, p) * (out - x)


def translation(x: torch.Tensor, p: float) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size in x and y; what comes in from outside is 0."""
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    if sh == 0 and sw == 0:
        return x
    on = _applied(x, p).reshape(n, 1, 1).long()
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device) * on
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device) * on
    ys = (torch.arange(h, device=x.device).reshape(1, h, 1) + dy + 1).clamp(0, h + 1)   # [N, H, 1], in the padded image
    xs = (torch.arange(w, device=x.device).reshape(1, 1, w) + dx + 1).clamp(0, w + 1)   # [N, 1, W]
    padded = F.pad(x, (1, 1, 1, 1))                                   # [N, C, H + 2, W + 2], a border of 0
    rows = torch.arange(n, device=x.device).reshape(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[rows, ys, xs].permute(0, 3, 1, 2)   # [N, H, W, C] -> [N, C, H, W]


def cutout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Set a square of half the image size, at a random place (partly outside at the edges), to 0."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = torch.randint(0, h + (1 - size_h % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - size_w % 2), (n, 1, 1), device=x.device)
    top, left = cy - size_h // 2, cx - size_w // 2
    ys = torch.arange(h, device=x.device).reshape(1, h, 1)
    xs = torch.arange(w, device=x.device).reshape(1, 1, w)
    inside = (ys >= top) & (ys < top + size_h) & (xs >= left) & (xs < left + size_w)
    inside = inside & _applied(x, p).reshape(n, 1, 1).bool()          # [N, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"translation": translation, "cutout": cutout, "color": color}   # config.AUGMENTATIONS, in order


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation, cutout' -> ('translation', 'cutout'), in the order given (names checked by the config)."""
    return tuple(n.strip().lower() for n in text.split(",") if n.strip())


def augment(x: torch.Tensor, policy: tuple[str, ...], p) -> torch.Tensor:
    """The policy's transforms, each applied to each image with probability ``p``; ``x`` itself when
    nothing applies (a float p of 0 or an empty policy). An adaptive p is a tensor on the device,
    which the host does not read during a step: the transforms always run, masked per image."""
    if not policy or (not isinstance(p, torch.Tensor) and p <= 0):
        return x
    for name in policy:
        x = TRANSFORMS[name](x, p)
    return x


def overfit_signal(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """ADA's overfitting heuristic for a critic with no fixed zero (WGAN): E[sign(D(real) - mean D(fake))],
    0 when D cannot tell the reals from the fakes, 1 when it scores every real above the average fake."""
    return torch.sign(real_score - fake_score.mean()).mean()


def adjust_p(p, signal, target: float, nimg: int, speed_kimg: float):
    """ADA's update: ``signal`` (the overfitting heuristic, averaged over the last ``nimg`` real images)
    above ``target`` raises p, below lowers it, by at most 1 per ``speed_kimg`` kimg; p stays in [0, 1].
    Floats, or tensors on the device (training: no host read)."""
    step = nimg / (speed_kimg * 1000.0)
    if isinstance(p, torch.Tensor):
        return (p + step * torch.sign(signal - target)).clamp(0.0, 1.0)
    if signal > target:
        p += step
    elif signal < target:
        p -= step
    return min(max(p, 0.0), 1.0)
