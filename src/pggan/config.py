"""The one typed configuration of a training run: dataclasses, validation, JSON round trip.

Every field carries a help text; ``options_markdown()`` renders them for the README (a test keeps
the README in sync). Presets live in :mod:`pggan.presets`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from .util.checks import is_resolution, or_list
from .util.device import PRECISION_CHOICES
from .util.errors import PgganError

AUGMENTATIONS = ("translation", "cutout", "color")   # what pggan.augment applies


class ConfigError(PgganError, ValueError):
    """A configuration value is invalid; the message says which and how to fix it."""


def opt(default: Any = dataclasses.MISSING, help: str = "", factory: Any = None):
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class NetworkConfig:
    resolution: int = opt(1024, "target resolution, a power of two from 4 to 1024")
    channels: int = opt(3, "image channels: 1 (grayscale) or 3 (RGB)")
    label_size: int = opt(0, "number of classes of a conditional network (set from the data when conditional)")
    fmap_base: int = opt(8192, "nf(stage) = min(fmap_base / 2**(stage * fmap_decay), fmap_max)")
    fmap_decay: float = opt(1.0, "see fmap_base")
    fmap_max: int = opt(512, "see fmap_base")
    widths: dict = opt(help="per-resolution feature-map overrides {res: maps}, e.g. the low-capacity net", factory=dict)
    latent_size: int = opt(0, "latent dimension; 0 means nf(0) as in the reference")
    normalize_latents: bool = opt(True, "pixel-normalize z (latents on the hypersphere, as the paper)")
    normalize_labels: bool = opt(True, "conditional G: normalize the latent and one-hot label together (TF release); "
                                       "off = the latent alone (Theano release)")
    use_wscale: bool = opt(True, "equalized learning rate (runtime He scaling); off = He init")
    g_norm: str = opt("pixel", "generator normalization: pixel (paper), batch (Gulrajani baseline) or none")
    d_norm: str = opt("none", "discriminator normalization: none (paper) or layer (Gulrajani baseline)")
    g_act: str = opt("lrelu", "generator activation: lrelu (slope 0.2) or relu")
    g_out: str = opt("linear", "generator output: linear (paper) or tanh")
    mbstd_group_size: int = opt(4, "minibatch stddev group size; 0 disables the layer")
    d_fused_pool: bool = opt(False, "D blocks pool right after the second conv, before bias and LReLU (the reference's "
                                    "fused_scale D, for converted networks); off = the paper's order")

    @property
    def resolution_log2(self) -> int:
        return int(math.log2(self.resolution))

    def nf(self, stage: int) -> int:
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def width(self, res: int) -> int:
        """Feature maps of the layers working at resolution ``res`` (block k uses nf(k-1))."""
        return int(self.widths.get(res, self.nf(int(math.log2(res)) - 1)))

    @property
    def z_dim(self) -> int:
        return self.latent_size or self.nf(0)


@dataclass
class LossConfig:
    kind: str = opt("wgangp", "wgangp (paper), lsgan (paper appendix B) or logistic (non-saturating + R1, not in the paper)")
    wgan_lambda: float = opt(10.0, "WGAN-GP gradient penalty weight")
    wgan_target: float = opt(1.0, "WGAN-GP target gradient norm gamma (750 for CIFAR-10)")
    wgan_epsilon: float = opt(0.001, "drift penalty weight eps_drift")
    r1_gamma: float = opt(10.0, "R1 weight for the logistic loss")
    penalty_every: int = opt(1, "compute the gradient penalty (WGAN-GP or R1) on every N-th D step only, weighted by "
                                "N (StyleGAN2's lazy regularisation; not in the paper, which has 1)")
    cond_weight: float = opt(1.0, "weight of the AC-GAN label terms")
    lsgan_noise: bool = opt(True, "LSGAN: adaptive multiplicative noise in D (appendix B)")


@dataclass
class ScheduleConfig:
    growing: bool = opt(True, "progressive growing; off trains at full resolution from the start")
    start_resolution: int = opt(4, "first resolution of the growing")
    lod_training_kimg: float = opt(600.0, "kimg to stabilise each resolution")
    lod_transition_kimg: float = opt(600.0, "kimg to fade in each new resolution")
    total_kimg: float = opt(15000.0, "length of the run in thousands of real images shown to D")
    stabilise_kimg_table: dict = opt(help="kimg to stabilise each resolution {res: kimg}, over lod_training_kimg "
                                          "(a --budget run's plan)", factory=dict)
    fade_kimg_table: dict = opt(help="kimg to fade in each resolution {res: kimg}, over lod_transition_kimg "
                                     "(a --budget run's plan)", factory=dict)
    batch_base: int = opt(16, "global minibatch where batch_table has no entry")
    batch_table: dict = opt(help="global minibatch per resolution {res: n}", factory=dict)
    device_batch_cap: dict = opt(help="most samples per device per resolution {res: n}", factory=dict)
    gpu_batches: str = opt("", "on one CUDA GPU, train at the named minibatch schedule instead of batch_table: v2 = "
                               "the authors' preset-v2-1gpu (128 at 4-16, 64, 32, 16, 8 at 32-256, 4 above; lr 0.0015 "
                               "at 1024), which keeps a GPU busy; empty = batch_table everywhere. The paper presets set v2")
    accumulate: bool = opt(False, "over the cap, accumulate gradients instead of shrinking the minibatch")
    auto_batch: bool = opt(False, "CUDA: before training, find per resolution the largest per-device batch that fits "
                                  "in memory and accumulate gradients over it; a fresh gpu_batches=v2 run on one GPU "
                                  "first takes, per resolution, the largest minibatch of the authors' 2-, 4- or 8-GPU "
                                  "v2 presets that fits, with that preset's learning rate")
    lr_base: float = opt(0.001, "Adam learning rate of G and D")
    lr_rampdown: float = opt(0.0, "share of total_kimg at the end of the run over which both learning rates fall "
                                  "linearly to 0 (not in the paper, which keeps them constant: 0)")
    g_lr_table: dict = opt(help="G learning rate per resolution {res: lr}", factory=dict)
    d_lr_table: dict = opt(help="D learning rate per resolution {res: lr}", factory=dict)


@dataclass
class OptimConfig:
    beta1: float = opt(0.0, "Adam beta1")
    beta2: float = opt(0.99, "Adam beta2")
    eps: float = opt(1e-8, "Adam epsilon")
    n_critic: int = opt(1, "D steps per G step")
    reset_on_phase: bool = opt(True, "reset Adam state at the start of every fade and stabilise phase")
    ema_beta: float = opt(0.999, "G_ema decay per D step (paper: 0.999)")
    ema_rampup: float = opt(0.0, "beyond the paper: cap the EMA horizon at this fraction of the images shown (0 = off)")


@dataclass
class AugmentConfig:
    policy: str = opt("", "beyond the paper, for small data sets: differentiable augmentation of every image D sees, "
                          "real and generated (Zhao et al. 2020): comma-separated translation, cutout, color; "
                          "empty = off, as the paper")
    p: float = opt(1.0, "probability that each transform applies to an image (the start value when adaptive)")
    adaptive: bool = opt(False, "adjust p from an overfitting heuristic as ADA (Karras et al. 2020): up while "
                                "E[sign(D(real) - mean D(fake))] is above target, down below")
    target: float = opt(0.6, "adaptive: the heuristic's target")
    speed_kimg: float = opt(100.0, "adaptive: kimg over which p can move from 0 to 1")


@dataclass
class TrainConfig:
    preset: str = opt("", "name of the preset this config started from")
    data: str = opt("builtin:shapes", "builtin:NAME or a folder of images")
    data_count: int = opt(10000, "images rendered for a builtin dataset / most images read from a folder")
    mirror: bool = opt(False, "random horizontal mirror augmentation")
    init: str = opt("", "fine-tune: start from this network's weights (a checkpoint, or a .pt of convert-official) "
                        "with fresh counters, at its resolution (set by --init)")
    freeze_d: int = opt(0, "FreezeD (beyond the paper): keep D's N highest-resolution blocks fixed (N < 0: the -N "
                           "lowest-resolution ones), e.g. when fine-tuning on little data")
    conditional: bool = opt(False, "condition on the dataset's labels (one-hot into G, AC-GAN terms in D)")
    clusters: int = opt(0, "beyond the paper: condition on K clusters of the images (k-means of their 8x8 colours) as "
                           "labels, for data without any; 0 = off")
    seed: int = opt(0, "seed of initialisation, latents and data order")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: str = opt("auto", "auto (bf16 where the hardware computes it natively, else fp32), fp32, bf16 (CPU and GPU) "
                                 "or fp16 (GPU, with loss scaling)")
    channels_last: bool = opt(True, "use the channels_last memory format for convolutions")
    compile: bool = opt(False, "torch.compile G, and D where no double backward runs through it (the penalty's D pass "
                               "stays eager); compiles a few graphs per resolution")
    cuda_graphs: bool = opt(False, "CUDA: capture each training step as a CUDA graph and replay it (one graph per level, "
                                   "fade or not and lazy penalty); where a step cannot be captured the log says why "
                                   "and training runs eagerly")
    deterministic: bool = opt(False, "deterministic kernels, so that an interrupted and resumed run repeats exactly")
    outdir: str = opt("runs", "parent folder of the run directories")
    desc: str = opt("", "extra text for the run directory name")
    budget: str = opt("", "wall-clock budget such as 25m, 2h or 3d: measure this machine before training and plan every "
                          "phase's kimg and total_kimg to end within it (docs/budget.md)")
    budget_top_share: float = opt(0.6, "a --budget run's share of training time stabilising the top resolution; "
                                       "the earlier phases share the rest, equal in images (docs/budget.md)")
    budget_network: str = opt("auto", "auto: a --budget run on cpu-small's network (no net.* option set) scales its "
                                      "feature maps and latent size to the budget (docs/budget.md); fixed: keep it")
    budget_lr_rampdown: float = opt(0.25, "a --budget run's sched.lr_rampdown when that is not set (0): its learning "
                                          "rates fall to 0 over this last share of the run (docs/budget.md); 0 = off")
    budget_clusters: int = opt(16, "a --budget run on cpu-small's network whose data gives it no labels conditions on "
                                   "this many clusters of its images (at most one per 100 images; docs/budget.md); 0 = off")
    tick_kimg: float = opt(4.0, "kimg between log/stats lines")
    image_kimg: float = opt(20.0, "kimg between image grids (0 = only at the end)")
    checkpoint_kimg: float = opt(100.0, "kimg between checkpoints (0 = only at the end)")
    keep_checkpoints: int = opt(3, "number of most recent checkpoints kept")
    grid_size: int = opt(8, "image grid is grid_size x grid_size")
    metrics: str = opt("", "metrics during training on G_ema at the current resolution: comma-separated swd, msssim, "
                           "fid, is, kid, pr")
    metrics_kimg: float = opt(0.0, "kimg between metric evaluations (0 = only at the end)")
    metrics_num: int = opt(1024, "generated (and real) images per evaluation during training")
    metrics_pairs: int = opt(1000, "MS-SSIM pairs per evaluation during training")
    inception: str = opt("", "FID/IS/KID: the Inception weights file (pt_inception-2015-12-05-6726825d.pth)")
    vgg16: str = opt("", "precision/recall on VGG16 features: torchvision's vgg16-397923af.pth (default: Inception's)")
    tensorboard: str = opt("auto", "TensorBoard events in the run directory: auto (when the tensorboard package is "
                                   "installed), on, off")
    net: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sched: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _from_dict(cls, d, "")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _from_dict(cls, d: dict, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a JSON object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key not in fields:
            raise ConfigError(f"unknown option '{prefix}{key}'; known: {', '.join(sorted(fields))}")
        t = hints[key]
        if dataclasses.is_dataclass(t):
            kwargs[key] = _from_dict(t, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, t, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, t: Any, name: str) -> Any:
    """Convert a JSON or command-line value to the field's type, with a clear error."""
    try:
        if t is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if t is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if t is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if t is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if t is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError
            return {int(k): v for k, v in value.items()}
    except (TypeError, ValueError, json.JSONDecodeError):
        pass
    else:
        return value
    tname = getattr(t, "__name__", str(t))
    example = '{"32": 64}' if t is dict else ""
    raise ConfigError(f"option '{name}': cannot read {value!r} as {tname}" + (f" (e.g. {example})" if example else ""))


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'25m' -> 1500.0 seconds; units s, m, h, d."""
    t = str(text).strip().lower()
    try:
        value, unit = float(t[:-1]), t[-1]
        if unit not in DURATION_UNITS or value <= 0 or not math.isfinite(value):
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError(f"cannot read the duration '{text}': use a number and a unit (s, m, h, d), "
                          f"e.g. 25m, 2h or 3d") from None
    return value * DURATION_UNITS[unit]


def merge(cfg: TrainConfig, d: dict, origin: str = "config file") -> TrainConfig:
    """A copy of ``cfg`` with the (nested) values of ``d`` over it: groups (net, sched, ...) merge key by
    key, every other value, tables included, is replaced whole."""
    def walk(inst, new: dict, prefix: str) -> dict:
        if not isinstance(new, dict):
            raise ConfigError(f"option '{prefix.rstrip('.')}' is a group of options, not a value ({origin})")
        out = dataclasses.asdict(inst)
        for k, v in new.items():
            if k not in out:
                raise ConfigError(f"unknown option '{prefix}{k}' ({origin})")
            sub = getattr(inst, k)
            out[k] = walk(sub, v, f"{prefix}{k}.") if dataclasses.is_dataclass(sub) else v
        return out

    return TrainConfig.from_dict(walk(cfg, d, ""))


def set_option(cfg: TrainConfig, dotted: str, value: Any) -> TrainConfig:
    """Return a copy of ``cfg`` with ``net.resolution=64``-style option ``dotted`` set."""
    nested: Any = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    return merge(cfg, nested, origin="see `pggan train --help-options`")


# ---- validation --------------------------------------------------------------------------

def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every value once; raise ConfigError naming the option and the fix."""
    n, s, loss, o = cfg.net, cfg.sched, cfg.loss, cfg.optim

    def need(cond: bool, msg: str):
        if not cond:
            raise ConfigError(msg)

    need(is_resolution(n.resolution),
         f"net.resolution must be a power of two from 4 to 1024, got {n.resolution}")
    need(n.channels in (1, 3), f"net.channels must be 1 or 3, got {n.channels}")
    need(n.label_size >= 0, "net.label_size must be >= 0")
    need(n.fmap_base > 0 and n.fmap_max > 0 and n.fmap_decay >= 0, "fmap_base and fmap_max must be > 0, fmap_decay >= 0")
    for res, w in n.widths.items():
        need(is_resolution(res), f"net.widths: {res} is not a power-of-two resolution from 4 to 1024")
        need(isinstance(w, int) and w > 0, f"net.widths[{res}] must be a positive integer")
    need(n.latent_size >= 0, "net.latent_size must be >= 0 (0 = nf(0))")
    need(n.g_norm in ("pixel", "batch", "none"), f"net.g_norm must be pixel, batch or none, got '{n.g_norm}'")
    need(n.d_norm in ("none", "layer"), f"net.d_norm must be none or layer, got '{n.d_norm}'")
    need(n.g_act in ("lrelu", "relu"), f"net.g_act must be lrelu or relu, got '{n.g_act}'")
    need(n.g_out in ("linear", "tanh"), f"net.g_out must be linear or tanh, got '{n.g_out}'")
    need(n.mbstd_group_size >= 0, "net.mbstd_group_size must be >= 0 (0 disables it)")

    need(loss.kind in ("wgangp", "lsgan", "logistic"), f"loss.kind must be wgangp, lsgan or logistic, got '{loss.kind}'")
    need(loss.wgan_target > 0, "loss.wgan_target must be > 0")
    need(loss.penalty_every >= 1, f"loss.penalty_every must be >= 1 (1: every D step), got {loss.penalty_every}")
    need(min(loss.wgan_lambda, loss.wgan_epsilon, loss.r1_gamma, loss.cond_weight) >= 0, "loss weights must be >= 0")

    need(is_resolution(s.start_resolution, high=n.resolution),
         f"sched.start_resolution must be a power of two from 4 to net.resolution ({n.resolution}), got {s.start_resolution}")
    need(s.lod_training_kimg >= 0 and s.lod_transition_kimg >= 0, "lod_training_kimg and lod_transition_kimg must be >= 0")
    need(s.lod_training_kimg + s.lod_transition_kimg > 0 or not s.growing,
         "with growing on, lod_training_kimg + lod_transition_kimg must be > 0")
    need(s.total_kimg > 0, f"sched.total_kimg must be > 0, got {s.total_kimg}")
    need(s.batch_base > 0, "sched.batch_base must be > 0")
    for name, table, kind in (("stabilise_kimg_table", s.stabilise_kimg_table, float),
                              ("fade_kimg_table", s.fade_kimg_table, float),
                              ("batch_table", s.batch_table, int), ("device_batch_cap", s.device_batch_cap, int),
                              ("g_lr_table", s.g_lr_table, float), ("d_lr_table", s.d_lr_table, float)):
        for res, v in table.items():
            need(is_resolution(res), f"sched.{name}: key {res} is not a power-of-two resolution")
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and (kind is float or float(v).is_integer()),
                 f"sched.{name}[{res}] must be a positive {kind.__name__}, got {v!r}")
    need(s.gpu_batches in ("", "v2"), f"sched.gpu_batches must be v2 or empty, got {s.gpu_batches!r}")
    need(s.lr_base > 0, "sched.lr_base must be > 0")
    need(0 <= s.lr_rampdown < 1, f"sched.lr_rampdown must be in [0, 1) (a share of total_kimg), got {s.lr_rampdown}")

    need(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1 and o.eps > 0, "Adam betas must be in [0, 1) and eps > 0")
    need(o.n_critic >= 1, "optim.n_critic must be >= 1")
    need(0 <= o.ema_beta < 1, "optim.ema_beta must be in [0, 1)")
    need(o.ema_rampup >= 0, "optim.ema_rampup must be >= 0")

    need(cfg.data_count > 0, "data_count must be > 0")
    need(cfg.clusters == 0 or cfg.clusters >= 2, f"clusters must be 0 (off) or at least 2, got {cfg.clusters}")
    need(not (cfg.clusters and cfg.conditional),
         "clusters gives the run labels of its own; it cannot be combined with conditional=true (the dataset's labels)")
    need(cfg.precision in PRECISION_CHOICES, f"precision must be {or_list(PRECISION_CHOICES)}, got '{cfg.precision}'")
    dev = cfg.device
    need(dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit()),
         f"device must be auto, cpu, cuda, cuda:N or mps, got '{dev}'")
    if cfg.budget:
        parse_duration(cfg.budget)
    a = cfg.aug
    bad_aug = [t for t in a.policy.split(",") if t.strip() and t.strip().lower() not in AUGMENTATIONS]
    need(not bad_aug, f"aug.policy: unknown augmentation '{bad_aug[0] if bad_aug else ''}'; "
                      f"choose from {', '.join(AUGMENTATIONS)}")
    need(0 <= a.p <= 1, f"aug.p must be in [0, 1], got {a.p}")
    need(0 < a.target < 1 and a.speed_kimg > 0, "aug.target must be in (0, 1) and aug.speed_kimg > 0")
    need(cfg.budget_network in ("auto", "fixed"), f"budget_network must be auto or fixed, got '{cfg.budget_network}'")
    need(cfg.budget_clusters >= 0, f"budget_clusters must be >= 0 (0 = off), got {cfg.budget_clusters}")
    need(0 < cfg.budget_top_share < 1, f"budget_top_share must be between 0 and 1, got {cfg.budget_top_share}")
    need(0 <= cfg.budget_lr_rampdown < 1, f"budget_lr_rampdown must be in [0, 1) (a share of the run), "
                                           f"got {cfg.budget_lr_rampdown}")
    need(cfg.tick_kimg > 0, "tick_kimg must be > 0")
    need(cfg.image_kimg >= 0 and cfg.checkpoint_kimg >= 0, "image_kimg and checkpoint_kimg must be >= 0")
    need(cfg.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
    need(1 <= cfg.grid_size <= 32, "grid_size must be from 1 to 32")
    need(cfg.metrics_kimg >= 0, "metrics_kimg must be >= 0")
    need(cfg.metrics_num >= 10, f"metrics_num must be >= 10, got {cfg.metrics_num}")
    need(cfg.metrics_pairs >= 1, "metrics_pairs must be >= 1")
    need(abs(cfg.freeze_d) < n.resolution_log2 - 1,
         f"freeze_d must leave a block of D to train: |freeze_d| < {n.resolution_log2 - 1} at {n.resolution}x{n.resolution}")
    need(cfg.tensorboard in ("auto", "on", "off"), f"tensorboard must be auto, on or off, got '{cfg.tensorboard}'")
    return cfg


# ---- documentation -----------------------------------------------------------------------

def options_markdown() -> str:
    """The table of every option with its default and help, as printed in the README."""
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]

    def walk(cls, prefix: str, inst):
        for f in dataclasses.fields(cls):
            v = getattr(inst, f.name)
            if dataclasses.is_dataclass(v):
                walk(type(v), f"{prefix}{f.name}.", v)
            else:
                rows.append(f"| `{prefix}{f.name}` | `{json.dumps(v)}` | {f.metadata.get('help', '')} |")

    walk(TrainConfig, "", TrainConfig())
    return "\n".join(rows)
