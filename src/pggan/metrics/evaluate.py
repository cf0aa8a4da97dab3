"""Running the metrics: SWD, MS-SSIM, FID, IS, KID and precision/recall of a generator against its data,
streamed in batches.

The same code serves ``pggan metrics`` (a saved network) and the metrics during training (G_ema at the
current resolution). Fakes are image ``i`` = seed ``seed * 1_000_000 + i``, so an evaluation is a pure
function of the network, the data and the seed. Under torchrun every rank generates (and runs the
Inception network on) its share of each batch; rank 0 gathers what SWD, KID and precision/recall need
(images or feature vectors) and reports.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..util.dist import DistInfo, all_min, all_sum, gather_rows
from ..util.errors import UsageError
from ..util.files import append_jsonl, atomic_write
from .fid import FeatureStats
from .msssim import ms_ssim
from .registry import METRICS, parse_metrics

STATS_VERSION = 1


@dataclass
class MetricOptions:
    names: list
    num: int = 2048              # fakes (and reals) for SWD, FID and IS
    pairs: int = 10000           # MS-SSIM pairs, from their own 2 x pairs fakes
    seed: int = 0
    batch: int = 64
    inception: str | None = None
    cache_dir: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    vgg16: str | None = None     # precision/recall on VGG16 features (the paper's choice) instead of Inception's
    pr_k: int = 3

    def validate(self) -> "MetricOptions":
        self.names = parse_metrics(self.names)
        if self.num < 2:
            raise UsageError(f"the metrics need at least 2 images (num), got {self.num}")
        if self.batch < 1:
            raise UsageError("the metrics batch must be >= 1")
        for m in self.metrics():
            m.check(self)
        return self

    def metrics(self, names=None) -> list:
        """The Metric objects of ``names`` (default: all asked for), in the registry's order."""
        names = self.names if names is None else names
        return [m for n, m in METRICS.items() if n in names]

    @property
    def pr_features(self) -> str:
        return "vgg16" if self.vgg16 else "inception"

    def networks(self) -> set:
        """The feature networks the metrics asked for need."""
        return set().union(*(m.networks(self) for m in self.metrics()))

    def images(self) -> int:
        """The fakes an evaluation generates."""
        ms = self.metrics()
        return (self.num if any(m.in_pass for m in ms) else 0) + sum(m.own_images(self) for m in ms)


def cache_dir(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("PGGAN_CACHE"):
        return os.environ["PGGAN_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(base, "pggan", "stats")


def data_fingerprint(spec: str) -> str:
    """A string that changes when the data changes: a dataset's file checksums, a builtin's name, or a
    folder/archive's file names, sizes and modification times."""
    from ..data.dataset import is_dataset

    if spec.startswith("builtin:"):
        return spec
    if os.path.isdir(spec) and is_dataset(spec):
        with open(os.path.join(spec, "dataset.json"), "rb") as f:
            return "dataset:" + hashlib.sha256(f.read()).hexdigest()
    h = hashlib.sha256()
    paths = [spec] if os.path.isfile(spec) else sorted(os.path.join(d, f) for d, _, fs in os.walk(spec) for f in fs)
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.relpath(p, spec)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()


class Evaluator:
    """Holds what is reused between evaluations (the feature networks, the real-statistics cache)."""

    def __init__(self, opts: MetricOptions, device: torch.device, info: DistInfo = DistInfo()):
        self.opts, self.device, self.info = opts.validate(), device, info
        self.inception = self.vgg16 = None
        networks = opts.networks()
        if "inception" in networks:
            from .inception import load_inception
            self.inception = load_inception(opts.inception, device)
        if "vgg16" in networks:
            from .vgg16 import load_vgg16
            self.vgg16 = load_vgg16(opts.vgg16, device)
        self._real_stats: dict[str, FeatureStats] = {}
        self._real_features: dict[str, torch.Tensor] = {}

    def _shards(self, total: int):
        """Global [lo, hi) batches of ``batch * world`` images; yields (lo, hi, my_lo, my_hi)."""
        b, w, r = self.opts.batch, self.info.world, self.info.rank
        for lo in range(0, total, b * w):
            hi = min(lo + b * w, total)
            yield lo, hi, min(lo + r * b, hi), min(lo + (r + 1) * b, hi)

    def evaluate(self, fake_fn, real_fn, num_real: int, data_key: str, names=None) -> dict:
        """``fake_fn(indices)`` and ``real_fn(indices)`` give float images [n, C, R, R] in [0, 255].

        ``num_real``: images available; ``data_key``: identifies the reals for the statistics cache;
        ``names``: a subset of the metrics to run this time (default all)."""
        o = self.opts
        metrics = o.metrics(names)
        start = time.time()
        result: dict = {"num": o.num, "seed": o.seed}
        real_order = np.sort(np.random.default_rng(o.seed).choice(num_real, size=min(o.num, num_real), replace=False))
        with tempfile.TemporaryDirectory() as folder:
            ctx = Pass(self, fake_fn, real_fn, num_real, real_order, data_key, folder, result, metrics)
            states = {m.name: m.start(ctx) for m in metrics if m.in_pass}
            for lo, hi, mlo, mhi in self._shards(o.num if states else 0):
                # a rank without images in the last batch still takes part in the gathers, with none
                batch = Batch(ctx, fake_fn(range(mlo, mhi)) if mhi > mlo else fake_fn(range(hi - 1, hi))[:0],
                              lo, hi, mlo)
                for m in metrics:
                    if m.in_pass:
                        m.add(states[m.name], batch)
                batch.keep_matrices()
            for m in metrics:
                value = m.finish(states.get(m.name), ctx)
                if value is not None:
                    result[m.name] = value
        result["seconds"] = time.time() - start
        return result

    def _features(self, kind: str, x: torch.Tensor):
        """Inception: (pool features, logits); VGG16: fc2 features. Empty rows for an empty batch."""
        if kind == "inception":
            if len(x) == 0:
                return torch.zeros(0, self.inception.feature_dim, device=self.device), None
            with torch.no_grad():
                return self.inception(x.to(self.device))
        if len(x) == 0:
            return torch.zeros(0, self.vgg16.feature_dim, device=self.device)
        with torch.no_grad():
            return self.vgg16(x.to(self.device))

    def _reduce(self, acc) -> None:
        if self.info.enabled:
            acc.set_tensors([all_sum(t.to(self.device)).cpu() for t in acc.tensors()])

    def real_msssim(self, real_fn, num_real: int) -> float:
        """The baseline: mean MS-SSIM of ``pairs`` random distinct pairs of real images (seeded)."""
        o = self.opts
        rng = np.random.default_rng(o.seed + 1)
        a = rng.integers(0, num_real, o.pairs)
        b = (a + rng.integers(1, num_real, o.pairs)) % num_real          # never an image with itself
        total = 0.0
        for i in range(0, o.pairs, o.batch):
            total += float(ms_ssim(real_fn(a[i:i + o.batch]), real_fn(b[i:i + o.batch])).sum())
        return total / o.pairs

    # ---- real statistics, cached on disk -------------------------------------------------------
    def _cache_key(self, order: np.ndarray, data_key: str, **extra) -> str:
        d = {"v": STATS_VERSION, "data": data_key, "num": len(order), "seed": self.opts.seed,
             "inception": self.inception.weights_sha256 if self.inception is not None else None, **extra}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:24]

    def _all_ranks(self, ok: bool) -> bool:
        """True when every rank has it (so that all compute, or none: the computing takes collectives)."""
        return bool(all_min(int(ok), self.device)) if self.info.enabled else ok

    def _real_feature_matrix(self, kind: str, real_fn, order: np.ndarray, data_key: str) -> torch.Tensor:
        """Features of the real images ``order`` (every rank gets them all), cached on disk as .npy."""
        net = self.inception if kind == "inception" else self.vgg16
        extra = {"features": kind}
        if kind == "vgg16":
            from .inception import file_sha256
            extra["vgg16"] = file_sha256(self.opts.vgg16)
        key = self._cache_key(order, data_key, **extra)
        if key in self._real_features:
            return self._real_features[key]
        path = os.path.join(cache_dir(self.opts.cache_dir), f"{kind}-real-{key}.npy")
        feats = None
        try:
            feats = torch.from_numpy(np.load(path)) if os.path.isfile(path) else None
        except (OSError, ValueError):
            feats = None                                       # a damaged cache file is recomputed
        if feats is not None and tuple(feats.shape) != (len(order), net.feature_dim):
            feats = None
        if not self._all_ranks(feats is not None):
            parts = []
            for lo, hi, mlo, mhi in self._shards(len(order)):
                x = real_fn(order[mlo:mhi]) if mhi > mlo else real_fn(order[hi - 1:hi])[:0]
                f = self._features(kind, x)
                f = f[0] if kind == "inception" else f
                parts.append(gather_rows(f, hi - lo, self.info, self.opts.batch, self.device).float().cpu())
            feats = torch.cat(parts)
            if self.info.is_main:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                array = feats.numpy()
                atomic_write(path, lambda f: np.save(f, array))
        self._real_features[key] = feats
        return feats

    def _real_feature_stats(self, real_fn, order: np.ndarray, data_key: str) -> FeatureStats:
        inc = self.inception
        key = self._cache_key(order, data_key)
        if key in self._real_stats:
            return self._real_stats[key]
        path = os.path.join(cache_dir(self.opts.cache_dir), f"fid-real-{key}.npz")
        stats = FeatureStats(inc.feature_dim)
        loaded = False
        if os.path.isfile(path):
            try:
                with np.load(path) as z:
                    stats.set_tensors([torch.from_numpy(z[k]) for k in ("n", "s1", "s2")])
                loaded = True
            except (OSError, ValueError, KeyError):
                loaded = False                                    # a damaged cache file is recomputed
        if not self._all_ranks(loaded):
            for _, _, mlo, mhi in self._shards(len(order)):
                if mhi > mlo:
                    stats.add(self._features("inception", real_fn(order[mlo:mhi]))[0])
            self._reduce(stats)
            if self.info.is_main:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                n, s1, s2 = (t.numpy() for t in stats.tensors())
                atomic_write(path, lambda f: np.savez(f, n=n, s1=s1, s2=s2))
        self._real_stats[key] = stats
        return stats


# ---- a saved network against its data (``pggan metrics``) --------------------------------------

def image_sources(gen, level, seed: int, progress=None):
    """``fake_fn`` and ``real_fn`` for :meth:`Evaluator.evaluate`: generated image ``i`` is seed
    ``1,000,000 * seed + i`` at the generator's level, drawn as ``pggan generate`` draws it (a conditional
    generator's class from its prior), so that with seed 0 the fakes are the files of
    ``pggan generate --seeds 0-(N-1)``; the real images of ``level`` get the same fade blend.
    ``progress(n)`` counts generated images."""
    from ..layers import fade_images

    def fake_fn(indices):
        seeds = [seed * 1_000_000 + i for i in indices]
        if progress:
            progress(len(seeds))
        return torch.from_numpy(gen.generate(seeds=seeds).images).permute(0, 3, 1, 2).float()

    def real_fn(idx):
        return fade_images(torch.from_numpy(np.asarray(level[np.asarray(idx)])).float(), gen.alpha).round()

    return fake_fn, real_fn


def stats_key(fingerprint: str, count: int, load_seed: int, channels: int, res: int, alpha: float) -> str:
    """What the real images of an evaluation depend on (for the statistics cache)."""
    return f"{fingerprint}|count={count}|seed={load_seed}|c={channels}|res={res}|alpha={alpha:.6f}"


def evaluate_network(network: str, data: str, opts: MetricOptions, device="cpu", data_count: int = 10000,
                     real_baseline: bool = False, progress=None) -> dict:
    """``progress(n)`` is called with the number of images generated as they are."""
    from ..api import load_generator
    from ..data.load import load_images

    gen = load_generator(network, device=device)
    res, channels = gen.resolution, gen.net.channels          # a mid-growth checkpoint: its current level
    for m in opts.validate().metrics():
        if res < m.min_resolution:
            raise UsageError(f"{m.name.upper()} needs images of {m.min_resolution}x{m.min_resolution} or more, but "
                             f"'{network}' was saved while its run trained at {res}x{res}; use a later checkpoint, or "
                             f"leave {m.name} out of --metrics")
    count = max(data_count, opts.num)
    images = load_images(data, gen.net.resolution, channels, count, opts.seed)
    level = images.levels[res]
    evaluator = Evaluator(opts, torch.device(device))
    fake_fn, real_fn = image_sources(gen, level, opts.seed, progress)
    key = stats_key(data_fingerprint(data), count, opts.seed, channels, res, gen.alpha)
    result = evaluator.evaluate(fake_fn, real_fn, len(level), key)
    if "msssim" in opts.names and real_baseline:
        result["msssim_real"] = evaluator.real_msssim(real_fn, len(level))
    result.update({"network": os.path.abspath(network), "data": data, "resolution": res, "alpha": gen.alpha,
                   "kimg": gen.kimg})
    if evaluator.inception is not None:
        result["inception"] = evaluator.inception.weights_path
    return result


def evaluate_images(folder: str, data: str, opts: MetricOptions, device="cpu", resolution: int | None = None) -> dict:
    """A folder of images (``pggan generate``'s files, another tool's samples) against the data: all of
    the folder's images against as many real ones (all of them where the data has no more), so that two
    folders of equal size are scored in full, as pytorch-fid and FidHelper score them."""
    from ..data.dataset import is_dataset, open_dataset
    from ..data.load import folder_images, load_images

    channels = open_dataset(data).channels if is_dataset(data) else 3
    fakes = folder_images(folder, resolution, channels)
    res = fakes.resolution
    opts = replace(opts, num=len(fakes)).validate()
    for m in opts.metrics():
        if res < m.min_resolution:
            raise UsageError(f"{m.name.upper()} needs images of {m.min_resolution}x{m.min_resolution} or more, but "
                             f"the images of '{folder}' are {res}x{res}; leave {m.name} out of --metrics")
    count = max(10000, opts.num)
    reals = load_images(data, res, channels, count, opts.seed).levels[res]
    fake_level = fakes.levels[res]
    evaluator = Evaluator(opts, torch.device(device))
    key = stats_key(data_fingerprint(data), count, opts.seed, channels, res, 1.0)
    result = evaluator.evaluate(lambda idx: torch.from_numpy(np.asarray(fake_level[np.asarray(idx)])).float(),
                                lambda idx: torch.from_numpy(np.asarray(reals[np.asarray(idx)])).float(),
                                len(reals), key)
    result.update({"images": os.path.abspath(folder), "data": data, "resolution": res, "num_real": min(opts.num, len(reals))})
    if evaluator.inception is not None:
        result["inception"] = evaluator.inception.weights_path
    return result


def append_results(run_dir: str, result: dict, kimg: float | None, names=tuple(METRICS)) -> list[str]:
    """One JSON line per metric in ``metric-<name>.jsonl`` of the run directory."""
    written = []
    common = {k: result[k] for k in ("network", "data", "num", "seed", "resolution", "alpha", "wall_s", "seconds",
                                     "inception") if k in result}
    for m in METRICS.values():
        if m.name in names and m.name in result:
            rec = dict(common, kimg=kimg, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
            rec[m.name] = result[m.name]
            rec.update({k: result[k] for k in m.extra_keys if k in result})
            path = os.path.join(run_dir, f"metric-{m.name}.jsonl")
            append_jsonl(path, rec)
            written.append(path)
    return written


def format_result(result: dict) -> list[str]:
    """Human-readable lines of a result."""
    return [line for m in METRICS.values() if m.name in result for line in m.lines(result)]


def summary(result: dict) -> str:
    """One line: 'swd 12.3 (64: 10.1, 32: ...), msssim 0.21, fid 35.2, is 3.1'."""
    return ", ".join(m.short(result[m.name]) for m in METRICS.values() if m.name in result)


class Pass:
    """What a metric's ``start`` and ``finish`` see of one evaluation (metrics/base.py)."""

    def __init__(self, ev: Evaluator, fake_fn, real_fn, num_real: int, real_order: np.ndarray, data_key: str,
                 folder: str, result: dict, metrics):
        self.ev, self.opts, self.fake_fn, self.real_fn = ev, ev.opts, fake_fn, real_fn
        self.num_real, self.real_order, self.data_key, self.folder, self.result = (num_real, real_order, data_key,
                                                                                     folder, result)
        self.is_main, self.inception = ev.info.is_main, ev.inception
        self.matrix_kinds = sorted(set().union(*(m.matrices(ev.opts) for m in metrics if m.in_pass)))
        self.kept: dict[str, list] = {kind: [] for kind in self.matrix_kinds}     # the fakes' features, on rank 0

    def shards(self, total: int):
        return self.ev._shards(total)

    def reduce(self, acc) -> None:
        """Sum an accumulator's tensors over the ranks."""
        self.ev._reduce(acc)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return all_sum(t.to(self.ev.device)).cpu() if self.ev.info.enabled else t

    def fake_matrix(self, kind: str) -> torch.Tensor | None:
        return torch.cat(self.kept[kind]) if self.is_main else None

    def real_matrix(self, kind: str) -> torch.Tensor:
        return self.ev._real_feature_matrix(kind, self.real_fn, self.real_order, self.data_key)

    def real_inception_stats(self) -> FeatureStats:
        """The reals' FID statistics: from their whole features where this pass has them, else cached sums."""
        if "inception" in self.matrix_kinds:
            real = FeatureStats(self.inception.feature_dim)
            real.add(self.real_matrix("inception"))
            return real
        return self.ev._real_feature_stats(self.real_fn, self.real_order, self.data_key)


class Batch:
    """One batch of the pass's fakes: this rank's images ``x`` (global rows lo..hi, this rank's from ``mlo``),
    with their features computed once whichever metrics ask."""

    def __init__(self, ctx: Pass, x: torch.Tensor, lo: int, hi: int, mlo: int):
        self.ctx, self.x, self.lo, self.hi, self.mlo, self.is_main = ctx, x, lo, hi, mlo, ctx.is_main
        self._features: dict = {}

    def feature(self, kind: str):
        if kind not in self._features:
            self._features[kind] = self.ctx.ev._features(kind, self.x)
        return self._features[kind]

    def gathered(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``rows`` (default the images) of every rank, on rank 0 (every rank must call it)."""
        ev = self.ctx.ev
        return gather_rows(self.x if rows is None else rows, self.hi - self.lo, ev.info, ev.opts.batch, ev.device)

    def keep_matrices(self) -> None:
        for kind, kept in self.ctx.kept.items():
            f = self.feature(kind)
            f = self.gathered(f[0] if kind == "inception" else f)
            if self.is_main:
                kept.append(f.cpu())
