"""Using a trained generator from Python: ``pggan.load_generator(path).generate(seeds=[0, 1, 2])``."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import (
    CheckpointError,
    checkpoint_config,
    checkpoint_schedule,
    load_checkpoint,
    load_state,
    network_file,
    read_generator,
)
from .classes import CLASS_STREAM, ClassPrior, ClassPriorError, parse_class
from .config import NetworkConfig, TrainConfig
from .networks import Generator
from .schedule import phase_at
from .util.checks import one_hot
from .util.errors import UsageError
from .util.grids import to_uint8

SEEDS_MAX = 10_000_000       # one call's images (a list of 10M seeds is already ~400 MB of Python ints)


def parse_seeds(text: str) -> list[int]:
    """'0-3,10' -> [0, 1, 2, 3, 10]; ranges are inclusive."""
    ranges = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise UsageError(f"cannot read seeds '{text}': use numbers and inclusive ranges, e.g. 0-99,200")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"seed range '{part}' runs backwards; write it as {hi}-{lo}")
        if hi >= 2 ** 64:
            raise UsageError(f"seed {hi} is too large: seeds are below 2**64")
        ranges.append(range(lo, hi + 1))
    count = sum(len(r) for r in ranges)
    if count > SEEDS_MAX:
        raise UsageError(f"seeds '{text}' are {count:,} images, more than one call makes ({SEEDS_MAX:,}); "
                         f"split them over several calls")
    return [s for r in ranges for s in r]


def latents_for_seeds(seeds, z_dim: int, truncate: float | None = None) -> torch.Tensor:
    """One latent per seed, the same for the same seed every time; optional truncation by resampling."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        z = torch.randn(z_dim, generator=g)
        if truncate is not None:
            bad = z.abs() > truncate
            while bad.any():
                z[bad] = torch.randn(int(bad.sum()), generator=g)
                bad = z.abs() > truncate
        out.append(z)
    return torch.stack(out)


@dataclass
class Generated:
    images: np.ndarray      # uint8 [N, H, W, C]
    tensor: torch.Tensor    # float [N, C, H, W] in about [-1, 1]

    def pil(self):
        from PIL import Image
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in self.images]


class LoadedGenerator:
    """A generator at the level of detail it was trained to: the full resolution for a finished run or
    an exported file; for a checkpoint from the middle of the growing, the resolution (and fade) the
    run had reached, as in its image grids. ``classes``: the prior of a conditional one (pggan.classes)."""

    def __init__(self, G: Generator, net: NetworkConfig, device: torch.device, source: str,
                 res_log2: int | None = None, alpha: float = 1.0, kimg: float = float("nan"),
                 classes: ClassPrior | None = None):
        self.G, self.net, self.device, self.source = G, net, device, source
        self.res_log2 = net.resolution_log2 if res_log2 is None else res_log2
        self.alpha = alpha
        self.kimg = kimg          # the training progress it was saved at (nan when unknown)
        self.classes = classes if classes is not None or not net.label_size else ClassPrior.uniform(net.label_size)

    @property
    def z_dim(self) -> int:
        return self.G.z_dim

    @property
    def resolution(self) -> int:
        """The resolution of the images ``generate`` returns."""
        return 2 ** self.res_log2

    def class_labels(self, class_idx: int | str | None, seeds) -> np.ndarray | None:
        """The class of each image of ``seeds`` (int64 [N], or None for an unconditional generator).
        ``class_idx``: a class number (--class K), 'turn' (seed s: class s mod C), or 'prior' (the default):
        drawn from the training data's shares by the seed's own random stream (pggan.classes), so that the
        images have the data's mix of classes. An entry of ``seeds`` may be None (a projected latent) only
        with a class number."""
        prior = self.classes
        class_idx = parse_class_option(class_idx)
        if prior is None:
            if class_idx is not None:
                raise UsageError("--class: this generator is not conditional; drop --class")
            return None
        if isinstance(class_idx, int):
            if not 0 <= class_idx < prior.size:
                raise UsageError(f"--class {class_idx}: this generator has classes 0..{prior.size - 1}")
            return np.full(len(seeds), class_idx, np.int64)
        if any(s is None for s in seeds):
            raise UsageError(f"an image has no seed to draw its class from: pass --class 0..{prior.size - 1}")
        if class_idx in (None, "prior"):
            return prior.draw(seeds)
        return np.asarray([int(s) % prior.size for s in seeds], np.int64)

    def latent_classes(self, class_idx, n: int, class_seed: int = 0) -> np.ndarray:
        """The classes of ``n`` latents that have no seeds: a class number, 'turn' (row i: class i mod C),
        or 'prior' (the default) drawn from the training data's shares by stream ``class_seed``."""
        class_idx = parse_class_option(class_idx)
        if class_idx in (None, "prior"):
            return self.classes.sample(np.random.default_rng([int(class_seed), CLASS_STREAM]), n)
        if class_idx == "turn":
            return np.arange(n, dtype=np.int64) % self.classes.size
        return self.class_labels(class_idx, [None] * n)

    def one_hot(self, classes) -> torch.Tensor | None:
        """Class numbers [N] (or soft class vectors [N, C], e.g. a blend of two) -> float [N, C] for G."""
        if classes is None:
            return None
        t = torch.as_tensor(np.asarray(classes))
        return (one_hot(t, self.net.label_size) if t.ndim == 1 else t).float()

    def project(self, image, steps: int = 300, class_idx: int | None = None, progress=None, **options):
        """The latent whose image is closest to ``image`` (a path, PIL image or uint8 [H, W, C] array, resized
        to this generator's level): a :class:`pggan.project.Projection` with ``z``, ``image``, ``label`` (the
        class it settled on) and ``distances``. Without ``class_idx`` a conditional generator's random starts
        take its classes in turn and the closest start's class is kept (raise ``starts`` to at least the
        number of classes to try them all). ``options``: the fields of :class:`pggan.project.ProjectOptions`."""
        from .project import ProjectOptions, load_target, project

        target = load_target(image, 2 ** self.res_log2, self.net.channels)
        opts = ProjectOptions(steps=steps, **options)
        opts.validate()
        classes = None
        if self.classes is not None:          # the starts' classes as seeds draw theirs: from the prior
            classes = (self.class_labels(class_idx, [None]) if class_idx is not None
                       else self.classes.sample(np.random.default_rng([opts.seed, CLASS_STREAM]), opts.starts))
        with torch.enable_grad():
            return project(lambda z, labels: self.G(z, labels, self.res_log2, self.alpha), self.z_dim, target, opts,
                           self.device, self.one_hot(classes), progress)

    @torch.no_grad()
    def generate(self, seeds=None, z=None, labels=None, truncate: float | None = None,
                 batch: int = 16, class_idx: int | str | None = None, class_seed: int = 0) -> Generated:
        """Images for ``seeds`` (or latents ``z`` [N, z_dim], with ``labels``: class numbers [N] or class
        vectors [N, C]). A conditional generator draws each seed's class as :meth:`class_labels` says;
        latents without labels draw theirs from the prior too (``class_seed``: the stream they come from),
        so that any source of images has the mix of classes the network learned."""
        if (seeds is None) == (z is None):
            raise UsageError("pass exactly one of seeds or z")
        if z is None:
            z = latents_for_seeds(seeds, self.z_dim, truncate)
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise UsageError(f"z must have shape [N, {self.z_dim}], got {tuple(z.shape)}")
        if self.net.label_size:
            if labels is None and seeds is None:
                labels = self.latent_classes(class_idx, len(z), class_seed)
            elif labels is None:
                labels = self.class_labels(class_idx, list(seeds))
            labels = self.one_hot(labels)
        elif labels is not None:
            raise UsageError("this generator is unconditional: it takes no labels")
        outs = []
        for i in range(0, len(z), batch):
            lab = None if labels is None else labels[i:i + batch].to(self.device)
            outs.append(self.G(z[i:i + batch].to(self.device), lab, self.res_log2, self.alpha).float().cpu())
        t = torch.cat(outs)
        return Generated(to_uint8(t), t)


def parse_class_option(value) -> int | str | None:
    try:
        return parse_class(value)
    except ValueError as e:
        raise UsageError(str(e)) from None


def stored_classes(text: str | None, net: NetworkConfig, source_if_absent: str, path: str) -> ClassPrior | None:
    """The class prior saved with a network; one saved before priors were stored gets a uniform prior,
    its classes pggan's own when it came from a clustered run, the user's otherwise."""
    if not net.label_size:
        return None
    if text is None:
        return ClassPrior.uniform(net.label_size, source_if_absent)
    try:
        return ClassPrior.from_json(text, net.label_size)
    except ClassPriorError as e:
        raise CheckpointError(f"'{path}': {e}") from None


def checkpoint_level(ckpt: dict, cfg: TrainConfig) -> tuple[int, float]:
    """(res_log2, alpha) the networks of a checkpoint were last trained at: mid-growth, the layers above
    that level are untrained. A checkpoint without images shown (converted, exported) is at the top."""
    if ckpt.get("cur_nimg"):
        ph = phase_at(int(ckpt["cur_nimg"]), checkpoint_schedule(ckpt, cfg), cfg.net.resolution)
        return ph.res_log2, ph.alpha
    return cfg.net.resolution.bit_length() - 1, 1.0


def load_generator(path: str, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """A ready generator from a training checkpoint (.pt, G_ema by default), an exported .safetensors, or a
    run directory (its final generator, else its newest checkpoint: :func:`network_file`)."""
    device = torch.device(device)
    path = network_file(str(path), need_checkpoint=not use_ema)
    res_log2, alpha = None, 1.0
    if str(path).endswith(".safetensors"):
        net, state, meta = read_generator(path)
        what, kimg = "generator", float(meta.get("kimg", "nan"))
        if "resolution" in meta:
            res_log2, alpha = int(meta["resolution"]).bit_length() - 1, float(meta.get("alpha", 1.0))
        classes = stored_classes(meta.get("classes"), net, "labels", path)
    else:
        ckpt = load_checkpoint(path)
        cfg = checkpoint_config(ckpt)
        net = cfg.net
        what = "G_ema" if use_ema else "G"
        state = ckpt[what]
        kimg = ckpt["cur_nimg"] / 1000.0 if "cur_nimg" in ckpt else float("nan")
        res_log2, alpha = checkpoint_level(ckpt, cfg)
        classes = stored_classes(ckpt.get("classes"), net, "clusters" if cfg.clusters else "labels", path)
    G = Generator(net)
    load_state(G, state, what, path)
    G = G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G, net, device, str(path), res_log2, alpha, kimg, classes)


__all__ = ["load_generator", "parse_seeds", "latents_for_seeds", "LoadedGenerator", "Generated", "CheckpointError"]
