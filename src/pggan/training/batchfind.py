"""``auto_batch``: per resolution, the largest per-device batch that fits the GPU's memory.

Before training, a throwaway Trainer runs one full step (D step with the penalty, G step) in a fade,
which holds the most activations, at growing per-device batches until the device runs out of memory.
Where the schedule's share of the global minibatch does not fit, the largest fitting power of two
becomes that resolution's ``device_batch_cap`` and gradients are accumulated over micro-batches of
that size, so the global minibatch (and the method) stays as configured.
"""
from __future__ import annotations

import copy
import dataclasses
import gc

import torch

from ..config import TrainConfig
from ..schedule import batch_for, phase_for_level
from ..util.dist import all_min
from ..util.errors import DeviceError
from .trainer import Trainer


def largest_fitting(fits, limit: int, start: int = 4) -> int:
    """The largest n in start, 2 start, 4 start, ... <= limit with ``fits(n)``; 0 if even ``start``
    does not fit. ``fits`` must be monotone (what fits at n fits below n)."""
    best, n = 0, start
    while n <= limit and fits(n):
        best, n = n, n * 2
    return best


def step_fits(trainer, res: int, per_device: int) -> bool:
    """One training step at ``res`` (mid-fade above 4x4) with this per-device batch: True unless out of memory."""
    ph = phase_for_level(res, 0.5 if res > 4 else 1.0, per_device, trainer.cfg.sched, trainer.cfg.net.resolution)
    ph = dataclasses.replace(ph, g_lr=0.0, d_lr=0.0)          # a probe: the weights stay as they are
    try:
        trainer.step(ph)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        trainer.opt_G.zero_grad(set_to_none=True)
        trainer.opt_D.zero_grad(set_to_none=True)
        gc.collect()
        if trainer.device.type == "cuda":
            torch.cuda.empty_cache()


def find_batch_caps(cfg: TrainConfig, images, device: torch.device, dist_info, fits=None, log=print) -> dict:
    """{resolution: per-device cap} for the resolutions whose share of the minibatch does not fit.

    Every rank probes its own device with a single-process Trainer (no collectives can be left half
    done by an out-of-memory error); the ranks then agree on the smallest result per resolution."""
    if fits is None:
        probe_cfg = copy.deepcopy(cfg)
        probe_cfg.sched.device_batch_cap = {}
        trainer = Trainer(probe_cfg, images, device)
        fits = lambda res, n: step_fits(trainer, res, n)  # noqa: E731
    caps = {}
    start = max(min(cfg.net.mbstd_group_size, 4), 1)
    res = cfg.sched.start_resolution if cfg.sched.growing else cfg.net.resolution
    while res <= cfg.net.resolution:
        share = batch_for(res, cfg.sched, dist_info.world) // dist_info.world
        best = share if fits(res, share) else largest_fitting(lambda n: fits(res, n), share, start)
        if dist_info.enabled:
            best = all_min(best, device)
        if best == 0:
            raise DeviceError(f"auto_batch: not even {start} images per device fit at {res}x{res}; "
                               f"use a device with more memory or a smaller network")
        if best < share:
            caps[res] = best
            log(f"auto_batch: {res}x{res}: {share} images per device do not fit; micro-batches of at most {best}, "
                f"gradients accumulated")
        res *= 2
    fits = trainer = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return caps
