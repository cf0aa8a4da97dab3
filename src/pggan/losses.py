"""Losses: WGAN-GP with drift (paper), LSGAN with adaptive D noise (appendix B), and the
non-saturating logistic loss with R1 (not in the paper). AC-GAN label terms when conditional.

Each function returns ``(loss, stats)``; stats are detached tensors, so nothing here forces a
host-device sync. Penalties take gradients in the autocast dtype but reduce them in fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .augment import overfit_signal
from .config import LossConfig
from .conv import double_backward_convs
from .layers import at_least_fp32


def _split(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's output [N, 1 + labels] -> score [N] (>= fp32), label logits [N, labels]."""
    return at_least_fp32(out[:, 0]), at_least_fp32(out[:, 1:])


def _label_term(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None or logits.shape[1] == 0:
        return logits.new_zeros(())
    return F.cross_entropy(logits, labels.argmax(dim=1))


def input_gradient_norm(D, x: torch.Tensor, res_log2: int, alpha: float, grad_scale: float = 1.0):
    """Per-sample L2 norm of dD(x)/dx (graph kept for the double backward), and D's output on x."""
    x = x.detach().requires_grad_(True)
    with double_backward_convs():
        out = D(x, res_log2, alpha)
    (grad,) = torch.autograd.grad(at_least_fp32(out[:, 0]).sum() * grad_scale, x, create_graph=True)
    norm = (at_least_fp32(grad) / grad_scale).flatten(1).norm(dim=1)
    return norm, out


def gradient_penalty(D, reals, fakes, res_log2: int, alpha: float, target: float = 1.0, grad_scale: float = 1.0,
                     mix: torch.Tensor | None = None):
    """WGAN-GP term ``(||grad D(x_hat)|| - target)**2 / target**2`` per sample, x_hat a per-sample lerp
    of reals and fakes by ``mix`` ([N, 1, 1, 1] in [0, 1), drawn here if not given)."""
    t = torch.rand(reals.shape[0], 1, 1, 1, device=reals.device) if mix is None else mix
    t = t.to(reals.dtype)
    x_hat = torch.lerp(reals.detach(), fakes.detach().to(reals.dtype), t)
    norm, _ = input_gradient_norm(D, x_hat, res_log2, alpha, grad_scale)
    return (norm - target).square() / (target ** 2)


def d_loss(cfg: LossConfig, D, reals, fakes, labels, res_log2: int, alpha: float, grad_scale: float = 1.0,
           mix: torch.Tensor | None = None, D_penalty=None, noise: float = 0.0, penalty_weight: float = 1.0):
    """Discriminator loss for one minibatch; ``fakes`` must come from G without a graph.

    ``D_penalty``: the D used where a double backward runs (the gradient penalties), when ``D`` is a
    compiled version that cannot do one; the same module by default. ``noise``: LSGAN's D noise.
    ``penalty_weight``: scales the gradient penalty; 0 skips it (lazy regularisation's other steps)."""
    D_penalty = D_penalty or D
    if cfg.kind == "logistic" and penalty_weight:
        fake_score, fake_logits = _split(D(fakes, res_log2, alpha, noise=noise))
        norm, real_out = input_gradient_norm(D_penalty, reals, res_log2, alpha, grad_scale)
        real_score, real_logits = _split(real_out)
        penalty = 0.5 * cfg.r1_gamma * norm.square()
        loss = F.softplus(fake_score) + F.softplus(-real_score) + penalty_weight * penalty
    else:
        # one pass over reals and fakes (bigger convolutions), each half with its own minibatch stddev
        both = D(torch.cat([reals, fakes.to(reals.dtype)]), res_log2, alpha, chunks=2, noise=noise)
        (real_score, real_logits), (fake_score, fake_logits) = _split(both[:len(reals)]), _split(both[len(reals):])
        penalty = torch.zeros_like(real_score)
        if cfg.kind == "logistic":
            loss = F.softplus(fake_score) + F.softplus(-real_score)
        elif cfg.kind == "wgangp":
            if penalty_weight:
                penalty = gradient_penalty(D_penalty, reals, fakes, res_log2, alpha, cfg.wgan_target, grad_scale, mix)
            loss = (fake_score - real_score + penalty_weight * cfg.wgan_lambda * penalty
                    + cfg.wgan_epsilon * real_score.square())
        else:  # lsgan: D outputs "fakeness", real -> 0, fake -> 1
            loss = real_score.square() + 0.1 * (fake_score - 1.0).square()
    loss = loss.mean()
    if labels is not None:
        loss = loss + cfg.cond_weight * (_label_term(real_logits, labels) + _label_term(fake_logits, labels))
    stats = {"loss_d": loss.detach(), "score_real": real_score.detach().mean(), "score_fake": fake_score.detach().mean(),
             "penalty": penalty_weight * penalty.detach().mean(),   # over a tick: the penalty's mean, lazy or not
             "overfit": overfit_signal(real_score.detach(), fake_score.detach())}
    return loss, stats


def g_loss(cfg: LossConfig, D, fakes, labels, res_log2: int, alpha: float, noise: float = 0.0):
    """Generator loss; gradients flow through D into ``fakes``."""
    score, logits = _split(D(fakes, res_log2, alpha, noise=noise))
    if cfg.kind == "wgangp":
        loss = -score
    elif cfg.kind == "lsgan":
        loss = score.square()
    else:
        loss = F.softplus(-score)
    loss = loss.mean()
    if labels is not None:
        loss = loss + cfg.cond_weight * _label_term(logits, labels)
    return loss, {"loss_g": loss.detach()}


class LSGANNoise:
    """Appendix B: D's noise strength from a running average of D's fakeness output, kept as a tensor
    on the training device so that the step never waits for the host to read D's score."""

    def __init__(self, d_hat: float = 0.0, device: torch.device | str = "cpu"):
        self.d_hat = torch.tensor(float(d_hat), device=device)

    def update(self, mean_fake_score) -> torch.Tensor:
        score = torch.as_tensor(mean_fake_score, device=self.d_hat.device).float()
        self.d_hat.mul_(0.9).add_(0.1 * score.clamp(0.0, 1.0))          # in place: a CUDA graph reads it
        return self.strength

    @property
    def strength(self) -> torch.Tensor:
        return 0.2 * (self.d_hat - 0.5).clamp(min=0.0).square()
