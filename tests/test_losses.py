import math

import pytest
import torch
import torch.nn.functional as F

from pggan.config import LossConfig, NetworkConfig
from pggan.losses import LSGANNoise, d_loss, g_loss, gradient_penalty, input_gradient_norm
from pggan.networks import Discriminator


class LinearD(torch.nn.Module):
    """D(x) = <w, x> + b: its input gradient is w for every sample, so the norm is known."""

    def __init__(self, shape, norm, labels=0):
        super().__init__()
        w = torch.randn(shape, dtype=torch.float64)
        self.w = torch.nn.Parameter(w / w.norm() * norm)
        self.labels = labels

    def forward(self, x, res_log2=None, alpha=1.0, chunks=1, noise=0.0):
        s = (x * self.w).flatten(1).sum(1, keepdim=True)
        return torch.cat([s, s.new_zeros(len(s), self.labels)], 1) if self.labels else s


@pytest.mark.parametrize("norm,target", [(3.0, 1.0), (0.5, 1.0), (700.0, 750.0)])
def test_gradient_penalty_known_value(norm, target):
    D = LinearD((3, 8, 8), norm)
    reals, fakes = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    gp = gradient_penalty(D, reals, fakes, 3, 1.0, target)
    assert torch.allclose(gp, torch.full((4,), (norm - target) ** 2 / target ** 2, dtype=torch.float64))


def test_wgangp_d_loss_value():
    torch.manual_seed(3)
    D = LinearD((3, 8, 8), 2.0)
    cfg = LossConfig()
    reals, fakes = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    loss, stats = d_loss(cfg, D, reals, fakes, None, 3, 1.0)
    r, f = D(reals)[:, 0], D(fakes)[:, 0]
    want = (f - r + 10.0 * (2.0 - 1.0) ** 2 + 0.001 * r ** 2).mean()
    assert torch.allclose(loss.double(), want, atol=1e-6)
    assert math.isclose(float(stats["penalty"]), 1.0, rel_tol=1e-6)


def test_logistic_r1_value():
    D = LinearD((3, 4, 4), 1.5)
    cfg = LossConfig(kind="logistic", r1_gamma=10.0)
    reals, fakes = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    loss, _ = d_loss(cfg, D, reals, fakes, None, 2, 1.0)
    r, f = D(reals)[:, 0], D(fakes)[:, 0]
    want = (F.softplus(f) + F.softplus(-r) + 5.0 * 1.5 ** 2).mean()
    assert torch.allclose(loss.double(), want, atol=1e-6)
    gl, _ = g_loss(cfg, D, fakes, None, 2, 1.0)
    assert torch.allclose(gl.double(), F.softplus(-f).mean())


@pytest.mark.parametrize("kind", ["wgangp", "logistic"])
def test_lazy_penalty_weight(kind):
    """Lazy regularisation: weight N on every N-th step, none (and no double backward) on the others."""
    D = LinearD((3, 4, 4), 2.0)
    cfg = LossConfig(kind=kind)
    reals, fakes = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    full, s1 = d_loss(cfg, D, reals, fakes, None, 2, 1.0)
    lazy, s4 = d_loss(cfg, D, reals, fakes, None, 2, 1.0, penalty_weight=4.0)
    skipped, s0 = d_loss(cfg, D, reals, fakes, None, 2, 1.0, penalty_weight=0.0)
    penalty = 10.0 * (2.0 - 1.0) ** 2 if kind == "wgangp" else 5.0 * 2.0 ** 2
    assert math.isclose(float(full - skipped), penalty, rel_tol=1e-6)
    assert math.isclose(float(lazy - skipped), 4 * penalty, rel_tol=1e-6)
    # the logged penalty is weighted too, so its mean over a tick is the penalty's mean, lazy or not
    assert math.isclose(float(s4["penalty"]), 4 * float(s1["penalty"])) and float(s0["penalty"]) == 0.0


def test_lsgan_values_and_noise_schedule():
    D = LinearD((3, 4, 4), 1.0)
    cfg = LossConfig(kind="lsgan")
    reals, fakes = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    loss, _ = d_loss(cfg, D, reals, fakes, None, 2, 1.0)
    r, f = D(reals)[:, 0], D(fakes)[:, 0]
    assert torch.allclose(loss.double(), (r ** 2).mean() + 0.1 * ((f - 1) ** 2).mean())
    gl, _ = g_loss(cfg, D, fakes, None, 2, 1.0)
    assert torch.allclose(gl.double(), (f ** 2).mean())
    n = LSGANNoise()
    assert n.strength == 0.0
    d_hat = 0.0
    for score in [2.0, 0.9, 0.95, 1.0, -1.0] * 4:
        d_hat = 0.9 * d_hat + 0.1 * min(max(score, 0), 1)
        n.update(score)
    assert float(n.d_hat) == pytest.approx(d_hat, rel=1e-6)             # a float32 tensor on the device
    assert float(n.strength) == pytest.approx(0.2 * max(0, d_hat - 0.5) ** 2, rel=1e-5)


def test_acgan_terms():
    D = LinearD((3, 4, 4), 1.0, labels=3)
    cfg = LossConfig()
    labels = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).double()
    reals, fakes = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    with_labels, _ = d_loss(cfg, D, reals, fakes, labels, 2, 1.0)
    torch.manual_seed(0)
    plain, _ = d_loss(cfg, D, reals, fakes, None, 2, 1.0)
    # zero logits -> cross-entropy log(3) for reals and for fakes
    assert math.isclose((with_labels - plain).item(), 2 * math.log(3), rel_tol=1e-5)
    gl, _ = g_loss(cfg, D, fakes, labels, 2, 1.0)
    assert math.isclose((gl + D(fakes)[:, 0].mean()).item(), math.log(3), rel_tol=1e-5)


@pytest.mark.parametrize("k,alpha", [(2, 1.0), (3, 0.5), (4, 1.0), (5, 0.25), (6, 0.7)])
def test_penalty_double_backward_on_every_resolution(k, alpha):
    cfg = NetworkConfig(resolution=64, fmap_base=32, fmap_max=8, latent_size=8)
    D = Discriminator(cfg).double()
    x = torch.randn(4, 3, 2 ** k, 2 ** k, dtype=torch.float64)
    y = torch.randn_like(x)
    torch.manual_seed(5)
    gp = gradient_penalty(D, x, y, k, alpha).mean()
    gp.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # check one weight's gradient of the penalty against a central finite difference
    w = D.fromrgb[str(k)].weight
    idx = (0, 0, 0, 0)
    analytic = w.grad[idx].item()
    eps = 1e-6
    vals = []
    for sign in (1, -1):
        with torch.no_grad():
            w[idx] += sign * eps
        torch.manual_seed(5)
        vals.append(gradient_penalty(D, x, y, k, alpha).mean().item())
        with torch.no_grad():
            w[idx] -= sign * eps
    assert math.isclose(analytic, (vals[0] - vals[1]) / (2 * eps), rel_tol=1e-4, abs_tol=1e-8)


def test_input_gradient_norm_bf16_is_close():
    cfg = NetworkConfig(resolution=8, fmap_base=64, fmap_max=16, latent_size=8)
    D = Discriminator(cfg)
    x = torch.randn(4, 3, 8, 8)
    n32, _ = input_gradient_norm(D, x, 3, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        n16, _ = input_gradient_norm(D, x, 3, 1.0)
    assert n16.dtype == torch.float32
    assert torch.allclose(n16, n32, rtol=0.05)
