"""Generator and discriminator of the paper (Table 2), grown by a real-valued level of detail.

Both networks hold the layers of every resolution up to the target for the whole run (as the
reference does), but a forward pass only touches the blocks up to the current resolution, and the
old branch of a fade only while alpha < 1.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import NetworkConfig
from .conv import conv2d
from .layers import (
    SQRT2,
    EqualizedConv2d,
    EqualizedLinear,
    downsample2x,
    fading,
    flatten_channel_major,
    lerp,
    like_weight,
    minibatch_stddev,
    pixel_norm,
    upsample2x,
)


class _GNormAct(nn.Module):
    """G's post-conv step: LReLU then pixel norm (paper), or batch norm then ReLU (baseline)."""

    def __init__(self, cfg: NetworkConfig, ch: int):
        super().__init__()
        self.kind = cfg.g_norm
        self.slope = 0.2 if cfg.g_act == "lrelu" else 0.0
        self.bn = nn.BatchNorm2d(ch) if cfg.g_norm == "batch" else None

    def forward(self, x):
        if self.bn is not None:
            x = self.bn(x)
        # in place: a conv's (or batch norm's) output is not needed by its own backward
        x = F.leaky_relu(x, self.slope, inplace=True) if self.slope else F.relu(x, inplace=True)
        return pixel_norm(x) if self.kind == "pixel" else x


class GBlock(nn.Module):
    """upsample, conv3x3, act/norm, conv3x3, act/norm."""

    def __init__(self, cfg: NetworkConfig, in_ch: int, out_ch: int):
        super().__init__()
        w = cfg.use_wscale
        self.conv0 = EqualizedConv2d(in_ch, out_ch, 3, use_wscale=w)
        self.post0 = _GNormAct(cfg, out_ch)
        self.conv1 = EqualizedConv2d(out_ch, out_ch, 3, use_wscale=w)
        self.post1 = _GNormAct(cfg, out_ch)

    def forward(self, x):
        x = self.post0(self.conv0(upsample2x(x)))
        return self.post1(self.conv1(x))


class GInput(nn.Module):
    """4x4 block: dense z -> 4x4 maps (the paper's 'Conv 4x4'), then conv3x3."""

    def __init__(self, cfg: NetworkConfig, in_features: int, ch: int):
        super().__init__()
        self.ch = ch
        self.dense = EqualizedLinear(in_features, ch * 16, gain=SQRT2 / 4, use_wscale=cfg.use_wscale, bias=False)
        self.bias = nn.Parameter(torch.zeros(ch))
        self.post0 = _GNormAct(cfg, ch)
        self.conv = EqualizedConv2d(ch, ch, 3, use_wscale=cfg.use_wscale)
        self.post1 = _GNormAct(cfg, ch)

    def forward(self, z):
        x = like_weight(self.dense(z).reshape(-1, self.ch, 4, 4), self.conv.weight)   # channel-major, as the reference
        x = self.post0(x + self.bias.reshape(1, -1, 1, 1).to(x.dtype))
        return self.post1(self.conv(x))


class Generator(nn.Module):
    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.label_size = cfg.label_size
        self.max_log2 = cfg.resolution_log2
        w = cfg.use_wscale
        self.blocks = nn.ModuleDict()
        self.torgb = nn.ModuleDict()
        for k in range(2, self.max_log2 + 1):
            ch = cfg.width(2 ** k)
            if k == 2:
                self.blocks[str(k)] = GInput(cfg, self.z_dim + cfg.label_size, ch)
            else:
                self.blocks[str(k)] = GBlock(cfg, cfg.width(2 ** (k - 1)), ch)
            self.torgb[str(k)] = EqualizedConv2d(ch, cfg.channels, 1, gain=1.0, use_wscale=w)

    def _rgb(self, k: int, h: torch.Tensor) -> torch.Tensor:
        y = self.torgb[str(k)](h)
        return torch.tanh(y) if self.cfg.g_out == "tanh" else y

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                res_log2: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images at resolution 2**res_log2 (default: full), blended with the previous level by alpha."""
        k_max = self.max_log2 if res_log2 is None else int(res_log2)
        _check_level(k_max, alpha, self.max_log2)
        x = z
        if self.label_size and labels is None:
            raise ValueError("this generator is label-conditioned: pass one-hot labels")
        if self.label_size and not self.cfg.normalize_labels:
            x = pixel_norm(x) if self.cfg.normalize_latents else x
            x = torch.cat([x, labels.to(x.dtype)], dim=1)
        else:
            if self.label_size:
                x = torch.cat([x, labels.to(x.dtype)], dim=1)
            if self.cfg.normalize_latents:
                x = pixel_norm(x)
        h = self.blocks["2"](x)
        for k in range(3, k_max):
            h = self.blocks[str(k)](h)
        if k_max == 2:
            return self._rgb(2, h)
        h_prev, h = h, self.blocks[str(k_max)](h)
        y = self._rgb(k_max, h)
        if fading(alpha):
            y = lerp(upsample2x(self._rgb(k_max - 1, h_prev)), y, alpha)
        return y


class _DConv(nn.Module):
    """D conv with optional layer norm (baseline) and the LSGAN multiplicative input noise."""

    def __init__(self, cfg: NetworkConfig, in_ch: int, out_ch: int, kernel: int = 3):
        super().__init__()
        self.conv = EqualizedConv2d(in_ch, out_ch, kernel, use_wscale=cfg.use_wscale)
        self.norm = nn.GroupNorm(1, out_ch) if cfg.d_norm == "layer" else None

    def forward(self, x, noise=0.0, pool: bool = False):
        if _noisy(noise):
            x = x * (1.0 + noise * torch.randn_like(x))
        if pool:        # the reference's fused conv + downscale: 2x2 average before bias and activation
            c = self.conv
            x = downsample2x(conv2d(x, c.weight * c.scale)) + c.bias.reshape(1, -1, 1, 1)
        else:
            x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.leaky_relu(x, 0.2, inplace=True)


class DBlock(nn.Module):
    """conv3x3, LReLU, conv3x3, LReLU, 2x2 average pool."""

    def __init__(self, cfg: NetworkConfig, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = _DConv(cfg, in_ch, in_ch)
        self.conv1 = _DConv(cfg, in_ch, out_ch)
        self.fused_pool = cfg.d_fused_pool

    def forward(self, x, noise: float = 0.0):
        x = self.conv0(x, noise)
        if self.fused_pool:
            return self.conv1(x, noise, pool=True)
        return downsample2x(self.conv1(x, noise))


class DHead(nn.Module):
    """4x4 head: minibatch stddev, conv3x3, dense (the paper's 'Conv 4x4'), dense to score (+ label logits)."""

    def __init__(self, cfg: NetworkConfig, ch: int, out_features: int):
        super().__init__()
        self.group = cfg.mbstd_group_size
        w = cfg.use_wscale
        self.conv = _DConv(cfg, ch + (1 if self.group else 0), ch)
        self.dense0 = EqualizedLinear(ch * 16, cfg.nf(0), use_wscale=w)
        self.norm = nn.LayerNorm(self.dense0.weight.shape[0]) if cfg.d_norm == "layer" else None
        self.dense1 = EqualizedLinear(self.dense0.weight.shape[0], out_features, gain=1.0, use_wscale=w)

    def forward(self, x, noise: float = 0.0, chunks: int = 1):
        if self.group:
            x = minibatch_stddev(x, self.group, chunks)
        x = self.conv(x, noise)
        x = flatten_channel_major(x)                     # [N, C*4*4]
        if _noisy(noise):
            x = x * (1.0 + noise * torch.randn_like(x))
        x = self.dense0(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.dense1(F.leaky_relu(x, 0.2))


class Discriminator(nn.Module):
    """Returns [N, 1 + label_size]: the score, then the label logits (AC-GAN) when conditional."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.label_size = cfg.label_size
        self.max_log2 = cfg.resolution_log2
        self.fromrgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for k in range(2, self.max_log2 + 1):
            ch = cfg.width(2 ** k)
            self.fromrgb[str(k)] = EqualizedConv2d(cfg.channels, ch, 1, use_wscale=cfg.use_wscale)
            if k == 2:
                self.blocks[str(k)] = DHead(cfg, ch, 1 + cfg.label_size)
            else:
                self.blocks[str(k)] = DBlock(cfg, ch, cfg.width(2 ** (k - 1)))

    def _from(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fromrgb[str(k)](x), 0.2)

    def forward(self, x: torch.Tensor, res_log2: int | None = None, alpha: float = 1.0,
                chunks: int = 1, noise: float = 0.0) -> torch.Tensor:
        """``chunks``: the batch holds that many minibatches (e.g. reals then fakes), each with its own
        minibatch statistics; otherwise every sample is processed independently. ``noise``: the strength
        of LSGAN's multiplicative noise on every layer's input (appendix B; 0 = none)."""
        k_max = self.max_log2 if res_log2 is None else int(res_log2)
        _check_level(k_max, alpha, self.max_log2)
        if x.shape[-1] != 2 ** k_max or x.shape[-2] != 2 ** k_max:
            raise ValueError(f"D at {2 ** k_max}x{2 ** k_max} got images of shape {tuple(x.shape)}")
        h = self._from(k_max, x)
        if k_max > 2:
            h = self.blocks[str(k_max)](h, noise)
            if fading(alpha):
                h = lerp(self._from(k_max - 1, downsample2x(x)), h, alpha)
            for k in range(k_max - 1, 2, -1):
                h = self.blocks[str(k)](h, noise)
        return self.blocks["2"](h, noise, chunks)


def freeze_d_blocks(D: Discriminator, n: int) -> list[int]:
    """FreezeD (Mo et al. 2020, beyond the paper): keep D's ``n`` highest-resolution blocks (the ones
    nearest the image, with their fromRGB layers) fixed while fine-tuning; ``n < 0`` fixes the ``-n``
    lowest-resolution blocks instead (the 4x4 head first). Returns the frozen levels (resolutions)."""
    levels = sorted(range(2, D.max_log2 + 1), reverse=n > 0)[:abs(n)]
    for k in levels:
        D.blocks[str(k)].requires_grad_(False)
        D.fromrgb[str(k)].requires_grad_(False)
    return [2 ** k for k in levels]


def _noisy(noise) -> bool:
    """LSGAN's noise strength: a float (0 = none) or a tensor (training's, adapted on the device)."""
    return isinstance(noise, torch.Tensor) or noise > 0


def _check_level(k: int, alpha, max_log2: int) -> None:
    if not 2 <= k <= max_log2:
        raise ValueError(f"resolution 2**{k} is outside this network (4..{2 ** max_log2})")
    if isinstance(alpha, torch.Tensor):     # a training step's fade weight on the device: not read here
        if k == 2:
            raise ValueError("there is no fade into 4x4: alpha must be 1 at the first resolution")
        return
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if k == 2 and alpha < 1.0:
        raise ValueError("there is no fade into 4x4: alpha must be 1 at the first resolution")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
