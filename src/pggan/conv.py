"""Stride-1 'same' convolutions whose derivatives of every order run on the fast kernels.

The WGAN-GP and R1 penalties differentiate D twice. PyTorch's double backward of a convolution
computes the weight term as a convolution with batch and channels swapped and an image-sized kernel,
which oneDNN runs at about half its usual speed (a 1x1 convolution's at 1 % of it). Written as three
functions that are each other's derivatives, every order uses the library's own forward, input-gradient
and weight-gradient kernels instead:

    y  = conv(x, w)              dy/dx -> input_grad(gy, w)        dy/dw -> weight_grad(x, gy)
    gx = input_grad(gy, w)       d/dgy -> conv(ggx, w)             d/dw  -> weight_grad(ggx, gy)
    gw = weight_grad(x, gy)      d/dx  -> input_grad(gy, ggw)      d/dgy -> conv(x, ggw)

Used inside :func:`double_backward_convs` (the penalties' D forward); the first-order passes keep
``F.conv2d``, whose fused input-and-weight backward is as fast and costs fewer calls at small sizes.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

aten = torch.ops.aten
_ENABLED = contextvars.ContextVar("pggan_double_backward_convs", default=False)
# Below 16x16 PyTorch's own double backward is as fast (its image-sized kernels are small there) and
# costs fewer Python calls: `python tools/ab_step.py double-backward-convs --res 8 --all-sizes`.
MIN_SIZE = 16


@contextlib.contextmanager
def double_backward_convs():
    """Within this block, :func:`conv2d` builds graphs whose second derivatives use the fast kernels."""
    token = _ENABLED.set(True)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, w, b, padding=k // 2)`` for an odd square kernel ``k``."""
    # compiled graphs have no double backward (the penalty's D pass runs eager)
    if torch.compiler.is_compiling() or not _ENABLED.get() or x.shape[-1] < MIN_SIZE:
        return F.conv2d(x, w, b, padding=w.shape[-1] // 2)
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, w, b = x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)
    return _Conv.apply(x, w, b)


def _args(w: torch.Tensor):
    p = w.shape[-1] // 2
    return [1, 1], [p, p], [1, 1], False, [0, 0], 1   # stride, padding, dilation, transposed, output pad, groups


def _wanted(ctx, i: int) -> bool:
    """Whether this backward pass needs input i's gradient. ``needs_input_grad`` only says that it
    requires grad; ``autograd.grad(.., inputs)`` and ``backward(inputs=..)`` prune further."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except RuntimeError:   # one of autograd.grad()'s own inputs: wanted
        return True


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return aten.convolution(x, w, b, *_args(w))

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gx = _InputGrad.apply(gy, w, x.detach()) if _wanted(ctx, 0) else None
        gw = _WeightGrad.apply(x, gy, w.detach()) if _wanted(ctx, 1) else None
        gb = gy.sum(dim=(0, 2, 3)) if ctx.has_bias and _wanted(ctx, 2) else None
        return gx, gw, gb


class _InputGrad(torch.autograd.Function):
    """dL/dx of ``conv(x, w)`` given dL/dy; ``x_like`` only lends its shape and layout."""

    @staticmethod
    def forward(ctx, gy, w, x_like):
        ctx.save_for_backward(gy, w)
        return aten.convolution_backward(gy, x_like, w, None, *_args(w), [True, False, False])[0]

    @staticmethod
    def backward(ctx, ggx):
        gy, w = ctx.saved_tensors
        g_gy = _Conv.apply(ggx, w, None) if _wanted(ctx, 0) else None
        g_w = _WeightGrad.apply(ggx, gy, w.detach()) if _wanted(ctx, 1) else None
        return g_gy, g_w, None


class _WeightGrad(torch.autograd.Function):
    """dL/dw of ``conv(x, w)`` given dL/dy; ``w_like`` only lends its shape and layout."""

    @staticmethod
    def forward(ctx, x, gy, w_like):
        ctx.save_for_backward(x, gy)
        return aten.convolution_backward(gy, x, w_like, None, *_args(w_like), [False, True, False])[1]

    @staticmethod
    def backward(ctx, ggw):
        x, gy = ctx.saved_tensors
        g_x = _InputGrad.apply(gy, ggw, x.detach()) if _wanted(ctx, 0) else None
        g_gy = _Conv.apply(x, ggw, None) if _wanted(ctx, 1) else None
        return g_x, g_gy, None
