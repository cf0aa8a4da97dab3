"""Metrics during training: G_ema at the current resolution (and fade) against the reals blended the
same way, with fixed seeds so that evaluating the same network twice gives the same numbers."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from ..api import latents_for_seeds
from ..layers import fade_images
from ..metrics.evaluate import Evaluator, MetricOptions, data_fingerprint, summary
from .loop import Trainer


class TrainingMetrics:
    def __init__(self, trainer: Trainer):
        cfg = trainer.cfg
        self.trainer, self.cfg = trainer, cfg
        opts = MetricOptions(cfg.metrics, cfg.metrics_num, cfg.metrics_pairs, seed=cfg.seed,
                             inception=cfg.inception or None)
        if "swd" in opts.validate().names and len(trainer.images) < cfg.metrics_num:
            raise ValueError(f"metrics: SWD compares {cfg.metrics_num} generated with as many real images, but the data "
                             f"has {len(trainer.images)}; lower metrics_num (--set metrics_num=N)")
        # all ranks build the evaluator: each generates (and embeds) its share of the images
        self.evaluator = Evaluator(opts, trainer.device, trainer.dist)
        self.data_key = f"{data_fingerprint(cfg.data)}|count={cfg.data_count}|seed={cfg.seed}|c={cfg.net.channels}"

    @torch.no_grad()
    def run(self, run_dir: str | None, wall_s: float, log) -> dict:
        t, cfg = self.trainer, self.cfg
        ph = t.phase()
        level = t.images.levels[ph.resolution]
        label_size = cfg.net.label_size
        z_dim = t.G_ema.z_dim

        def fake_fn(indices):
            seeds = [cfg.seed * 1_000_000 + i for i in indices]
            z = latents_for_seeds(seeds, z_dim).to(t.device)
            labels = None
            if label_size:
                labels = torch.nn.functional.one_hot(torch.tensor([s % label_size for s in seeds]), label_size)
                labels = labels.float().to(t.device)
            x = t.G_ema(z, labels, ph.res_log2, ph.alpha).float()
            return ((x + 1.0) * 127.5).clamp(0, 255).round().cpu()       # the uint8 values a PNG would hold

        def real_fn(idx):
            x = torch.from_numpy(np.asarray(level[np.asarray(idx)])).float()
            return fade_images(x, ph.alpha).round()

        key = f"{self.data_key}|res={ph.resolution}|alpha={ph.alpha:.6f}"
        names = [n for n in self.evaluator.opts.names if n != "swd" or ph.resolution >= 8]   # 7x7 patches
        if not names:
            log(f"metrics at kimg {t.cur_nimg / 1000:.1f}: skipped (SWD needs images of 8x8 or more)")
            return {}
        result = self.evaluator.evaluate(fake_fn, real_fn, len(level), key, names)
        if run_dir is not None:
            common = {"kimg": t.cur_nimg / 1000.0, "wall_s": wall_s, "resolution": ph.resolution, "alpha": ph.alpha,
                      "num": result["num"], "seed": result["seed"], "seconds": result["seconds"],
                      "network": "G_ema (training)", "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            for name in names:
                with open(os.path.join(run_dir, f"metric-{name}.jsonl"), "a") as f:
                    f.write(json.dumps(dict(common, **{name: result[name]})) + "\n")
            log(f"metrics at kimg {t.cur_nimg / 1000:.1f} (res {ph.resolution}, {result['seconds']:.1f} s): "
                f"{summary(result)}")
        return result
