"""Running the metrics: SWD, MS-SSIM, FID and IS of a generator against its data, streamed in batches.

The same code serves ``pggan metrics`` (a saved network) and the metrics during training (G_ema at the
current resolution). Fakes are image ``i`` = seed ``seed * 1_000_000 + i``, so an evaluation is a pure
function of the network, the data and the seed. Under torchrun every rank generates (and runs the
Inception network on) its share of each batch; rank 0 gathers what SWD needs and reports.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import METRICS, parse_metrics
from ..util.dist import DistInfo, all_sum, gather_rows
from ..util.errors import UsageError
from ..util.files import append_jsonl, atomic_write
from .fid import FeatureStats, InceptionScore, frechet_distance
from .msssim import ms_ssim
from .swd import SWDAccumulator

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

    def validate(self) -> "MetricOptions":
        self.names = parse_metrics(self.names)
        if self.num < 2:
            raise UsageError(f"the metrics need at least 2 images (num), got {self.num}")
        if "is" in self.names and self.num < 10:
            raise UsageError("the Inception Score uses 10 splits: num must be at least 10")
        if "msssim" in self.names and self.pairs < 1:
            raise UsageError("MS-SSIM needs pairs >= 1")
        if self.batch < 1:
            raise UsageError("the metrics batch must be >= 1")
        return self


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
    """Holds what is reused between evaluations (the Inception network, the real-statistics cache)."""

    def __init__(self, opts: MetricOptions, device: torch.device, info: DistInfo = DistInfo()):
        self.opts, self.device, self.info = opts.validate(), device, info
        self.inception = None
        if {"fid", "is"} & set(opts.names):
            from .inception import load_inception
            self.inception = load_inception(opts.inception, device)
        self._real_stats: dict[str, FeatureStats] = {}

    # ---- the two image sources ------------------------------------------------------------
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
        names = o.names if names is None else names
        start = time.time()
        result: dict = {"num": o.num, "seed": o.seed}
        if "swd" in names and num_real < o.num:
            raise UsageError(f"SWD compares equal counts: the data has {num_real} images, fewer than num={o.num}; "
                             f"lower the number of images")
        real_order = np.sort(np.random.default_rng(o.seed).choice(num_real, size=min(o.num, num_real), replace=False))
        with tempfile.TemporaryDirectory() as folder:
            swd_acc = SWDAccumulator(folder, o.seed) if "swd" in names else None
            fake_stats = FeatureStats(self.inception.feature_dim) if "fid" in names else None
            score = InceptionScore(self.inception.fc.out_features, o.num) if "is" in names else None
            needs_fakes = swd_acc is not None or fake_stats is not None or score is not None
            for lo, hi, mlo, mhi in self._shards(o.num if needs_fakes else 0):
                # a rank without images in the last batch still takes part in the gather, with none
                x = fake_fn(range(mlo, mhi)) if mhi > mlo else fake_fn(range(hi - 1, hi))[:0]
                if swd_acc is not None:
                    gathered = gather_rows(x, hi - lo, self.info, o.batch, self.device)
                    if self.info.is_main:
                        swd_acc.add(0, gathered)
                if len(x) and (fake_stats is not None or score is not None):
                    feats, logits = self._inception(x)
                    if fake_stats is not None:
                        fake_stats.add(feats)
                    if score is not None:
                        score.add(logits, mlo)
            if swd_acc is not None and self.info.is_main:
                for i in range(0, len(real_order), o.batch):
                    swd_acc.add(1, real_fn(real_order[i:i + o.batch]))
                result["swd"] = swd_acc.result()
        if fake_stats is not None:
            self._reduce(fake_stats)
            real = self._real_feature_stats(real_fn, real_order, data_key)
            result["fid"] = frechet_distance(*fake_stats.mean_cov(), *real.mean_cov())
        if score is not None:
            self._reduce(score)
            mean, std = score.result()
            result["is"] = {"mean": mean, "std": std}
        if "msssim" in names:
            result["msssim"] = self._msssim(fake_fn)
        result["seconds"] = time.time() - start
        return result

    def _inception(self, x: torch.Tensor):
        with torch.no_grad():
            return self.inception(x.to(self.device))

    def _reduce(self, acc) -> None:
        if self.info.enabled:
            acc.set_tensors([all_sum(t.to(self.device)).cpu() for t in acc.tensors()])

    def _msssim(self, fake_fn) -> float:
        """Mean MS-SSIM of pairs (2k, 2k+1) of fakes num .. num + 2 * pairs - 1."""
        o = self.opts
        total = torch.zeros(1, dtype=torch.float64)
        for _, _, mlo, mhi in self._shards(o.pairs):
            if mhi > mlo:
                x = fake_fn(range(o.num + 2 * mlo, o.num + 2 * mhi))
                total += ms_ssim(x[0::2], x[1::2]).sum()
        if self.info.enabled:
            total = all_sum(total.to(self.device)).cpu()
        return float(total) / o.pairs

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
    def _real_feature_stats(self, real_fn, order: np.ndarray, data_key: str) -> FeatureStats:
        o, inc = self.opts, self.inception
        key = hashlib.sha256(json.dumps({"v": STATS_VERSION, "data": data_key, "num": len(order), "seed": o.seed,
                                         "inception": inc.weights_sha256}, sort_keys=True).encode()).hexdigest()[:24]
        if key in self._real_stats:
            return self._real_stats[key]
        path = os.path.join(cache_dir(o.cache_dir), f"fid-real-{key}.npz")
        stats = FeatureStats(inc.feature_dim)
        loaded = False
        if os.path.isfile(path):
            try:
                with np.load(path) as z:
                    stats.set_tensors([torch.from_numpy(z[k]) for k in ("n", "s1", "s2")])
                loaded = True
            except (OSError, ValueError, KeyError):
                loaded = False                                    # a damaged cache file is recomputed
        if not loaded:
            for _, _, mlo, mhi in self._shards(len(order)):
                if mhi > mlo:
                    stats.add(self._inception(real_fn(order[mlo:mhi]))[0])
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
    ``1,000,000 * seed + i`` (classes in turn for a conditional generator) at the generator's level;
    the real images of ``level`` get the same fade blend. ``progress(n)`` counts generated images."""
    from ..layers import fade_images

    def fake_fn(indices):
        seeds = [seed * 1_000_000 + i for i in indices]
        labels = [s % gen.net.label_size for s in seeds] if gen.net.label_size else None
        if progress:
            progress(len(seeds))
        return torch.from_numpy(gen.generate(seeds=seeds, labels=labels).images).permute(0, 3, 1, 2).float()

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
    if "swd" in opts.names and res < 8:
        raise UsageError(f"SWD needs images of 8x8 or more, but '{network}' was saved while its run trained at "
                         f"{res}x{res}; use a later checkpoint, or leave swd out of --metrics")
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


def append_results(run_dir: str, result: dict, kimg: float | None, names=METRICS) -> list[str]:
    """One JSON line per metric in ``metric-<name>.jsonl`` of the run directory."""
    written = []
    common = {k: result[k] for k in ("network", "data", "num", "seed", "resolution", "alpha", "wall_s", "seconds",
                                     "inception") if k in result}
    for name in names:
        if name in result:
            rec = dict(common, kimg=kimg, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
            rec[name] = result[name]
            if name == "msssim" and "msssim_real" in result:
                rec["msssim_real"] = result["msssim_real"]
            path = os.path.join(run_dir, f"metric-{name}.jsonl")
            append_jsonl(path, rec)
            written.append(path)
    return written


def format_result(result: dict) -> list[str]:
    """Human-readable lines of a result."""
    lines = []
    if "swd" in result:
        levels = result["swd"]["levels"]
        lines.append("SWD x1e3  " + "  ".join(f"{res:>7}" for res in levels) + "      avg")
        lines.append("          " + "  ".join(f"{v:7.2f}" for v in levels.values()) + f"  {result['swd']['avg']:7.2f}")
    if "msssim" in result:
        lines.append(f"MS-SSIM   {result['msssim']:.4f}"
                     + (f"   (real images: {result['msssim_real']:.4f})" if "msssim_real" in result else ""))
    if "fid" in result:
        lines.append(f"FID       {result['fid']:.3f}")
    if "is" in result:
        lines.append(f"IS        {result['is']['mean']:.3f} +- {result['is']['std']:.3f}")
    return lines


def summary(result: dict) -> str:
    """One line: 'swd 12.3 (64: 10.1, 32: ...), msssim 0.21, fid 35.2, is 3.1'."""
    parts = []
    if "swd" in result:
        levels = ", ".join(f"{r}: {v:.2f}" for r, v in result["swd"]["levels"].items())
        parts.append(f"swd {result['swd']['avg']:.2f} ({levels})")
    if "msssim" in result:
        parts.append(f"msssim {result['msssim']:.4f}")
    if "fid" in result:
        parts.append(f"fid {result['fid']:.3f}")
    if "is" in result:
        parts.append(f"is {result['is']['mean']:.3f}")
    return ", ".join(parts)
