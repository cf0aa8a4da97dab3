import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import pggan.conv
import pggan.losses
from pggan.config import NetworkConfig
from pggan.conv import MIN_SIZE, _InputGrad, _WeightGrad, conv2d, double_backward_convs
from pggan.losses import gradient_penalty
from pggan.networks import Discriminator

aten = torch.ops.aten


class ConvCalls(TorchDispatchMode):
    """Records (kind, weight shape or output mask) of every convolution run."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is aten.convolution:
            self.calls.append(("forward", tuple(args[1].shape)))
        elif func.overloadpacket is aten.convolution_backward:
            self.calls.append(("backward", tuple(args[10])))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("k", [1, 3])
def test_derivatives_of_every_order(k, monkeypatch):
    monkeypatch.setattr(pggan.conv, "MIN_SIZE", 1)     # small images (fast gradchecks) on the custom path
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)

    def conv(*a):
        with double_backward_convs():
            return conv2d(*a)
    assert type(conv(x, w, b).grad_fn).__name__ == "_ConvBackward"
    with double_backward_convs():
        assert torch.equal(conv2d(x, w, b), F.conv2d(x, w, b, padding=k // 2))
    assert torch.autograd.gradcheck(conv, (x, w, b))
    assert torch.autograd.gradgradcheck(conv, (x, w, b))
    # the derivatives are themselves twice differentiable (third order of the convolution)
    assert torch.autograd.gradgradcheck(lambda g, w_: _InputGrad.apply(g, w_, x.detach()), (gy, w))
    assert torch.autograd.gradgradcheck(lambda x_, g: _WeightGrad.apply(x_, g, w.detach()), (x, gy))


def _penalty_grads(D, x, y, k, alpha):
    D.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    gradient_penalty(D, x, y, k, alpha).mean().backward()
    return {n: p.grad.clone() for n, p in D.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("k,alpha", [(4, 1.0), (5, 0.4)])
def test_penalty_gradients_match_pytorch_convolutions(k, alpha, monkeypatch):
    cfg = NetworkConfig(resolution=32, fmap_base=32, fmap_max=8, latent_size=8)
    D = Discriminator(cfg).double()
    x, y = torch.randn(2, 4, 3, 2 ** k, 2 ** k, dtype=torch.float64)
    ours = _penalty_grads(D, x, y, k, alpha)
    monkeypatch.setattr(pggan.losses, "double_backward_convs", contextlib.nullcontext)
    stock = _penalty_grads(D, x, y, k, alpha)
    assert ours.keys() == stock.keys() and len(ours) > 4
    for name in ours:
        torch.testing.assert_close(ours[name], stock[name], rtol=1e-10, atol=1e-12, msg=name)


def test_penalty_runs_no_image_sized_kernels_and_no_unneeded_work():
    # 64 maps, batch 2: the 16x16 layers scale their output (a leaf weight), the 32x32 ones their weight
    cfg = NetworkConfig(resolution=32, fmap_base=2048, fmap_max=64, latent_size=8)
    D = Discriminator(cfg)
    x, y = torch.randn(2, 2, 3, 32, 32)
    with ConvCalls() as rec:
        gradient_penalty(D, x, y, 5, 1.0).mean().backward()
    kernels = {shape[-1] for kind, shape in rec.calls if kind == "forward"}
    # PyTorch's own double backward would also run 32x32 and 16x16 kernels; below MIN_SIZE it is kept
    assert MIN_SIZE == 16 and kernels == {1, 3, 4, 8}
    # the penalty's first backward asks for dD/dx only: one input-gradient call per conv, no weight gradients
    with ConvCalls() as rec, double_backward_convs():
        xh = x.requires_grad_()
        torch.autograd.grad(D(xh, 5, 1.0).sum(), xh, create_graph=True)
    masks = [m for kind, m in rec.calls if kind == "backward"]
    n_convs = sum(1 for kind, _ in rec.calls if kind == "forward")
    assert masks == [(True, False, False)] * n_convs


def test_penalty_under_bf16_autocast_matches_fp32():
    """The custom path casts like autocast would and returns fp32 gradients for fp32 parameters."""
    cfg = NetworkConfig(resolution=16, fmap_base=256, fmap_max=16, latent_size=8)
    D = Discriminator(cfg)
    x, y = torch.randn(2, 4, 3, 16, 16)
    ref = _penalty_grads(D, x, y, 4, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16), ConvCalls() as rec:
        got = _penalty_grads(D, x, y, 4, 1.0)
    assert ("backward", (False, True, False)) in rec.calls       # the custom weight-gradient kernel ran
    flat = [torch.cat([g.flatten() for g in d.values()]) for d in (ref, got)]
    assert all(g.dtype == torch.float32 for g in got.values())
    assert F.cosine_similarity(flat[0], flat[1], dim=0) > 0.99
