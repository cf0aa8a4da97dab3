"""Metrics during training: G_ema at the current resolution (and fade) against the reals blended the
same way, with fixed seeds so that evaluating the same network twice gives the same numbers."""
from __future__ import annotations

import torch

from ..api import LoadedGenerator
from ..metrics.evaluate import Evaluator, MetricOptions, data_fingerprint, image_sources, stats_key, summary
from ..util.errors import UsageError
from .rundir import RunDir
from .trainer import Trainer


class TrainingMetrics:
    def __init__(self, trainer: Trainer):
        cfg = trainer.cfg
        self.trainer, self.cfg = trainer, cfg
        opts = MetricOptions(cfg.metrics, cfg.metrics_num, cfg.metrics_pairs, seed=cfg.seed,
                             inception=cfg.inception or None, vgg16=cfg.vgg16 or None)
        if "swd" in opts.validate().names and len(trainer.images) < cfg.metrics_num:   # said before any training
            raise UsageError(f"metrics: SWD compares {cfg.metrics_num} generated with as many real images, but the data "
                             f"has {len(trainer.images)}; lower metrics_num (--set metrics_num=N)")
        # all ranks build the evaluator: each generates (and embeds) its share of the images
        self.evaluator = Evaluator(opts, trainer.device, trainer.dist)
        self.fingerprint = data_fingerprint(cfg.data)

    @torch.no_grad()
    def run(self, run_dir: RunDir | None, wall_s: float, log) -> dict:
        t, cfg = self.trainer, self.cfg
        ph = t.phase()
        level = t.images.levels[ph.resolution]
        metrics = self.evaluator.opts.metrics()
        names = [m.name for m in metrics if ph.resolution >= m.min_resolution]
        if not names:
            why = ", ".join(f"{m.name.upper()} needs images of {m.min_resolution}x{m.min_resolution} or more"
                            for m in metrics)
            log(f"metrics at kimg {t.cur_nimg / 1000:.1f}: skipped ({why})")
            return {}
        gen = LoadedGenerator(t.G_ema, cfg.net, t.device, "G_ema", ph.res_log2, ph.alpha, classes=t.classes)
        fake_fn, real_fn = image_sources(gen, level, cfg.seed)
        key = stats_key(self.fingerprint, cfg.data_count, cfg.seed, cfg.net.channels, ph.resolution, ph.alpha)
        result = self.evaluator.evaluate(fake_fn, real_fn, len(level), key, names)
        result.update({"network": "G_ema (training)", "resolution": ph.resolution, "alpha": ph.alpha, "wall_s": wall_s})
        if run_dir is not None:
            run_dir.append_metrics(result, t.cur_nimg, names)
            log(f"metrics at kimg {t.cur_nimg / 1000:.1f} (res {ph.resolution}, {result['seconds']:.1f} s): "
                f"{summary(result)}")
        return result
