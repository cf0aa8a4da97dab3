"""Building blocks of the Progressive GAN networks (paper sections 3 and 4, spec "Layers")."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import conv2d

SQRT2 = math.sqrt(2.0)


class EqualizedConv2d(nn.Module):
    """Conv with the paper's equalized learning rate.

    With ``use_wscale`` the weight is stored as N(0, 1) and multiplied at run time by
    ``gain / sqrt(fan_in)``, so Adam sees every layer at the same scale (section 4.1).
    Without it, the same constant is applied once at init (He's initializer).
    The bias is never scaled and starts at zero. The constant is applied to whichever is smaller, the
    weight or the output (small images of wide layers: 16 images of 4x4x512 are 131k values, the
    weight 2.4M), so the scaling, forward and backward, costs the fewest memory passes.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, gain: float = SQRT2,
                 use_wscale: bool = True, bias: bool = True):
        super().__init__()
        he_std = gain / math.sqrt(in_ch * kernel * kernel)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel) * (1.0 if use_wscale else he_std))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = he_std if use_wscale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.scale == 1.0:
            return conv2d(x, self.weight, self.bias)
        if not _scale_output(n * h * w * len(self.weight), self.weight.numel()):
            return conv2d(x, self.weight * self.scale, self.bias)
        y = conv2d(x, self.weight)   # [N, C_out, H, W]: no more values than the weight
        return y * self.scale if self.bias is None else torch.add(_as_map(self.bias, y), y, alpha=self.scale)


class EqualizedLinear(nn.Module):
    """Dense layer with the equalized learning rate (see :class:`EqualizedConv2d`)."""

    def __init__(self, in_features: int, out_features: int, gain: float = SQRT2,
                 use_wscale: bool = True, bias: bool = True):
        super().__init__()
        he_std = gain / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (1.0 if use_wscale else he_std))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = he_std if use_wscale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return F.linear(x, self.weight, self.bias)
        if not _scale_output(x.shape[0] * len(self.weight), self.weight.numel()):
            return F.linear(x, self.weight * self.scale, self.bias)
        # not addmm(.., alpha=scale): its backward scales the weight's gradient, a full pass over it
        y = F.linear(x, self.weight)   # [N, out]: no more values than the weight
        return y * self.scale if self.bias is None else torch.add(self.bias.to(y.dtype), y, alpha=self.scale)


def _scale_output(output_numel: int, weight_numel: int) -> bool:
    """Scale the output rather than the weight when it is smaller. Traced graphs (torch.compile, ONNX
    export) always scale the weight, so that they hold no condition on the batch size."""
    if not isinstance(output_numel, int) or torch.compiler.is_compiling():   # a SymInt: a traced batch size
        return False
    return output_numel < weight_numel


def _as_map(bias: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return bias.reshape(1, -1, 1, 1).to(like.dtype)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Promote reduced precision to fp32 for statistics; fp64 stays fp64."""
    return x if x.dtype == torch.float64 else x.float()


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalize the feature vector of every pixel (dim 1) to unit RMS (section 4.2).

    The statistic is computed in fp32 whatever the input's dtype and applied in the input's dtype, so
    under bf16 the output and the backward's products are bf16 passes (within two roundings of the
    exact output), not fp32 ones cast back. The channels are moved last for the reduction (contiguous
    in channels_last); in training a single autograd node holds the output and the factor, and its
    backward is one expression.
    """
    if torch.compiler.is_compiling():   # in fp32: the compiler fuses the casts away
        return _pixel_norm_last(at_least_fp32(x).movedim(1, -1), eps)[0].movedim(-1, 1).to(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:
        return _PixelNorm.apply(x, eps)
    return _pixel_norm_last(x.movedim(1, -1), eps)[0].movedim(-1, 1)


def _pixel_norm_last(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / rms(x), 1 / rms(x)) over the last dim; the factor in fp32 (or fp64), [..., 1]."""
    if x.dtype in (torch.float32, torch.float64):
        r = torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)
    else:   # reduced in fp32 without a squared copy of the activation
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
        r = torch.rsqrt(norm.square() / x.shape[-1] + eps)
    return x * r.to(x.dtype), r


class _PixelNorm(torch.autograd.Function):
    """y = x r with r = 1 / rms(x): dL/dx = r g - (r mean(g y)) y, from the saved y and r; the
    full-size products run in the input's dtype (mean(g y) accumulated in fp32 by the kernel)."""

    @staticmethod
    def forward(ctx, x, eps):
        y, r = _pixel_norm_last(x.movedim(1, -1), eps)    # [N, (H, W,) C], [N, (H, W,) 1]
        ctx.save_for_backward(y, r)
        return y.movedim(-1, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        y, r = ctx.saved_tensors
        g = g.movedim(1, -1)
        gy_mean = at_least_fp32((g * y).sum(dim=-1, keepdim=True)) / y.shape[-1]
        gx = torch.addcmul(g * r.to(g.dtype), y, (r * gy_mean).to(g.dtype), value=-1)
        return gx.movedim(-1, 1), None


def minibatch_stddev(x: torch.Tensor, group_size: int, chunks: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation feature map (section 3), grouped as the reference.

    Sample ``i`` belongs to group ``i mod M`` (M = N / G); each group yields one value, the
    biased std over the group averaged over channels and pixels. Computed in fp32.
    ``chunks`` > 1 treats the batch as that many independent minibatches (reals and fakes
    evaluated in one pass keep their own statistics).
    """
    if chunks > 1:
        return torch.cat([minibatch_stddev(part, group_size) for part in x.chunk(chunks)], dim=0)
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"minibatch stddev: batch size {n} is not divisible by the group size {g}; "
                         f"use a batch (per device) that is a multiple of {g} or change mbstd_group_size")
    y = at_least_fp32(x).reshape(g, n // g, c, h, w)          # [G, M, C, H, W]
    if torch.is_grad_enabled() and y.requires_grad and not torch.compiler.is_compiling():
        y = _GroupStd.apply(y)
    else:
        y = _group_std(y)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)      # [M] -> [N, 1, H, W]
    return torch.cat([x, y.to(x.dtype)], dim=1)


def _group_std(y: torch.Tensor) -> torch.Tensor:
    """[G, M, C, H, W] -> [M]: the biased std over G, averaged over C, H and W."""
    return _centred_std(y)[1].mean(dim=(1, 2, 3))


def _centred_std(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = y - y.mean(dim=0)
    var = d.square().mean(dim=0) + 1e-8
    # not torch.sqrt: on the CPU it runs MKL's vsSqrt, which on some VMs returned 12-bit results on one
    # thread now and then (a run then differs from the same run repeated); rsqrt is PyTorch's own kernel
    return d, var * torch.rsqrt(var)                     # [G, M, C, H, W], [M, C, H, W]


class _GroupStd(torch.autograd.Function):
    """:func:`_group_std` as one autograd node: d std_m / dy = (y - mean(y)) / (G C H W std), from the saved
    (y - mean) / std, or, where the backward itself is differentiated (the penalties' double backward),
    from y again in differentiable operations; either way far fewer operations than autograd through
    the seven of the forward."""

    @staticmethod
    def forward(ctx, y):
        d, s = _centred_std(y)
        ctx.save_for_backward(y, d / s)
        return s.mean(dim=(1, 2, 3))

    @staticmethod
    def backward(ctx, g):
        y, d_over_s = ctx.saved_tensors
        if torch.is_grad_enabled():                    # a graph of this backward is being built
            d, s = _centred_std(y)
            d_over_s = d / s
        return d_over_s * (g.reshape(1, -1, 1, 1, 1) / (y[0, 0].numel() * len(y)))


def _layout(x: torch.Tensor) -> torch.memory_format:
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def like_weight(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format of a conv ``weight`` (the network's: channels_last or not), so that the
    element-wise kernels before and after the conv, forward and backward, see one layout (on mixed
    layouts they take a slower, strided path)."""
    return x.contiguous(memory_format=_layout(weight))


def flatten_channel_major(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C*H*W] in channel-major order (the reference's dense layers), whatever the
    layout; the gradient goes back in the input's layout (see :func:`like_weight`)."""
    return _ChannelMajorFlatten.apply(x) if x.requires_grad else x.reshape(len(x), -1)


class _ChannelMajorFlatten(torch.autograd.Function):
    """Differentiable to any order: its backward is a reshape and a copy."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape, ctx.layout = x.shape, _layout(x)
        return x.reshape(len(x), -1)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape).contiguous(memory_format=ctx.layout)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling (2x2 element replication)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 box average."""
    return F.avg_pool2d(x, 2)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def fading(alpha) -> bool:
    """Whether a forward pass computes the old branch of a fade: a float alpha below 1, or a tensor
    alpha (a training step's, on the device, which the host never reads: only fades pass one)."""
    return isinstance(alpha, torch.Tensor) or alpha < 1.0


def fade_images(x: torch.Tensor, alpha) -> torch.Tensor:
    """Blend images at the current resolution with their coarser version, as G and D do in a fade.

    ``lerp(x, upsample(avgpool(x)), 1 - alpha)``: at alpha = 1 the images pass through untouched.
    Used for the real images so that reals and fakes always share the same blend.
    """
    if not fading(alpha):
        return x
    return lerp(x, upsample2x(downsample2x(x)), 1.0 - alpha)
