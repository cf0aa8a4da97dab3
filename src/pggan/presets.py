"""Named configurations: the paper's networks and schedules, and a small one for CPUs."""
from __future__ import annotations

from dataclasses import replace

from .config import ConfigError, LossConfig, NetworkConfig, OptimConfig, ScheduleConfig, TrainConfig
from .schedule import PAPER_BATCH, use_v2_batches

LOWCAP_128_WIDTHS = {16: 256, 32: 128, 64: 64, 128: 32}   # appendix A.2: /2 at 16x16, then /4


def _paper(res: int, kimg: float, **kw) -> TrainConfig:
    """A paper configuration; on one GPU it trains at the v2 batches (sched.gpu_batches, docs/paper.md)."""
    return TrainConfig(net=NetworkConfig(resolution=res), precision="fp32",
                       sched=ScheduleConfig(lod_training_kimg=kimg, lod_transition_kimg=kimg, gpu_batches="v2",
                                            batch_table={r: b for r, b in PAPER_BATCH.items() if r <= res}), **kw)


def celebahq_1024() -> TrainConfig:
    """Appendix A.1: 1024x1024, 800k + 800k images per phase, batch 16 then 14/6/3."""
    return _paper(1024, 800, mirror=True)


def celebahq_1024_v2() -> TrainConfig:
    """The authors' later one-GPU schedule (preset-v2-1gpu): larger batches at low resolution (128 at
    4-16 down to 4 at 512 and 1024), lr 0.0015 at 1024, 12,000 kimg."""
    cfg = _paper(1024, 600, mirror=True)
    use_v2_batches(cfg.sched, 1024)
    cfg.sched.total_kimg = 12000
    return cfg


def lowcap_128() -> TrainConfig:
    """Section 6.1's lower-capacity 128x128 network, 600k + 600k images per phase."""
    cfg = _paper(128, 600, mirror=True)
    cfg.net.widths = dict(LOWCAP_128_WIDTHS)
    cfg.sched.total_kimg = 10000
    return cfg


def cifar10() -> TrainConfig:
    """Section 6.5 / appendix D: 32x32, WGAN-GP target gamma = 750, no mirroring."""
    cfg = _paper(32, 600)
    cfg.loss.wgan_target = 750.0
    cfg.sched.total_kimg = 12000
    return cfg


def gulrajani_a() -> TrainConfig:
    """Table 1 row (a): the Gulrajani et al. baseline on the low-capacity 128 network (appendix A.2)."""
    return TrainConfig(
        mirror=True, precision="fp32",
        net=NetworkConfig(resolution=128, widths=dict(LOWCAP_128_WIDTHS), latent_size=128, normalize_latents=False,
                          use_wscale=False, g_norm="batch", d_norm="layer", g_act="relu", g_out="tanh",
                          mbstd_group_size=0),
        loss=LossConfig(wgan_epsilon=0.0),
        sched=ScheduleConfig(growing=False, batch_base=64, lr_base=1e-4, total_kimg=10000),
        optim=OptimConfig(beta2=0.9, n_critic=5, reset_on_phase=False))


def cpu_small() -> TrainConfig:
    """Sized for a 2-core CPU: 32x32, 64 maps up to 8x8 then 32 and 16, 10k + 10k images per phase and
    40k more stabilising 32x32 (the images come from there), batch 32 where steps are cheap. Every paper
    component is on, the paper's EMA (0.999) with a ramp-up (its horizon at most 5 % of the images shown:
    docs/budget.md); precision auto."""
    return TrainConfig(
        data="builtin:shapes", data_count=4096, tick_kimg=2.0, image_kimg=10.0, checkpoint_kimg=20.0,
        net=NetworkConfig(resolution=32, fmap_base=512, fmap_max=64, latent_size=64, widths={16: 32, 32: 16}),
        sched=ScheduleConfig(lod_training_kimg=10, lod_transition_kimg=10, total_kimg=100, batch_base=16,
                             batch_table={4: 32, 8: 32}, lr_base=0.003),
        optim=OptimConfig(ema_beta=0.999, ema_rampup=0.05))


def demo() -> TrainConfig:
    """What ``make demo`` trains (with ``--budget 4m``): cpu-small on the built-in shapes, conditional on
    their labels, a higher learning rate and a longer top level than a budget run on real data needs (the
    shapes' grid needs faces on every shape after four minutes), SWD on 512 images every 20 kimg for the
    plot. docs/budget.md#the-demo has the figures."""
    cfg = cpu_small()
    cfg.conditional = True
    cfg.sched.lr_base = 0.005
    cfg.budget_top_share = 0.85
    cfg.budget_lr_rampdown = 0.0
    cfg.metrics, cfg.metrics_kimg, cfg.metrics_num = "swd", 20.0, 512
    return cfg


def demo_budget() -> str:
    """``make demo``'s --budget: 4 minutes where the machine computes bf16 natively (a CUDA GPU, a CPU with
    AVX-512-BF16 or AMX), 8 on an fp32-only CPU, which trains about half the images per second; both reach
    the README's grid (README.md: 0.66 clear in 8 minutes on an AVX2-only EPYC, 0.42 in 4)."""
    import torch

    from .util.device import cpu_has_native_bf16
    return "4m" if torch.cuda.is_available() or cpu_has_native_bf16() else "8m"


BUDGET_PRESETS = ("cpu-small", "demo")      # presets whose network a --budget run sizes (training/budget.py)
WIDTH_OPTIONS = ("net.fmap_base", "net.fmap_decay", "net.fmap_max", "net.widths", "net.latent_size")   # what sizes it


def scaled_cpu_small(net: NetworkConfig, scale: int) -> NetworkConfig:
    """cpu-small's network at ``net``'s resolution with ``scale`` times its feature maps at every
    resolution and its latent size (at most the paper's 512): the family a --budget run picks from
    (training/budget.py). ``net``'s other options (channels, classes, layers) are kept."""
    small = cpu_small().net
    res, widths = 4, {}
    while res <= net.resolution:
        widths[res] = min(512, scale * small.width(res))
        res *= 2
    return replace(net, fmap_base=small.fmap_base, fmap_decay=small.fmap_decay, fmap_max=small.fmap_max,
                   widths=widths if scale > 1 else dict(small.widths),
                   latent_size=min(512, scale * small.latent_size))


PRESETS = {
    "celebahq-1024": celebahq_1024,
    "celebahq-1024-v2": celebahq_1024_v2,
    "lowcap-128": lowcap_128,
    "cifar10": cifar10,
    "gulrajani-a": gulrajani_a,
    "cpu-small": cpu_small,
    "demo": demo,
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    cfg.preset = name
    return cfg
