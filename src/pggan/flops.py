"""Counting the FLOPs a piece of work really executes, convolutions and matmuls included in every
order of differentiation.

torch's FlopCounterMode does not follow the gradient penalty's double backward, so we count at
the aten level ourselves: every ``convolution`` and ``convolution_backward`` (per requested
output) and every matrix product is priced from its operand shapes (one multiply-add = 2 FLOPs).
Elementwise work is not counted; it is small beside the convolutions and is reported as time.
Every aten call that computes (views excluded) is counted too: a step's number of kernels, which bounds
it where each kernel is small (a GPU launching them one by one, or a CPU step at 4x4).
"""
from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    """2 * MACs of a convolution; for a transposed one every *input* element meets C_out/g * k*k weights."""
    k = math.prod(w_shape[2:])
    if transposed:
        return 2 * math.prod(x_shape) * w_shape[1] * k
    return 2 * math.prod(out_shape) * w_shape[1] * k


class FlopCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.flops = {"conv": 0, "matmul": 0}
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += func.namespace == "aten" and not func.is_view
        pkt = func.overloadpacket
        if pkt is aten.convolution:
            x, w, transposed = args[0], args[1], bool(args[6])
            self.flops["conv"] += conv_flops(x.shape, w.shape, out.shape, transposed)
        elif pkt is aten.convolution_backward:
            grad_out, x, w = args[0], args[1], args[2]
            transposed, mask = bool(args[7]), args[10]
            f = conv_flops(x.shape, w.shape, grad_out.shape, transposed)
            self.flops["conv"] += f * (int(mask[0]) + int(mask[1]))
        elif pkt in (aten.mm, aten.bmm):
            a, b = args[0], args[1]
            self.flops["matmul"] += 2 * math.prod(a.shape) * b.shape[-1]
        elif pkt in (aten.addmm, aten.baddbmm):
            a, b = args[1], args[2]
            self.flops["matmul"] += 2 * math.prod(a.shape) * b.shape[-1]
        return out

    @property
    def total(self) -> int:
        return sum(self.flops.values())


def count_flops(fn) -> dict:
    """Run ``fn()`` once under the counter; returns {'conv': ..., 'matmul': ..., 'total': ..., 'ops': ...}."""
    with FlopCounter() as c:
        fn()
    return dict(c.flops, total=c.total, ops=c.ops)
