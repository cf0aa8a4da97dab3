"""``auto_batch``: per resolution, the batches that fit the GPU's memory.

Before training, a throwaway Trainer runs one full step (D step with the penalty, G step) in a fade,
which holds the most activations, at growing per-device batches until the device runs out of memory.
Where the schedule's share of the global minibatch does not fit, the largest fitting power of two
becomes that resolution's ``device_batch_cap`` and gradients are accumulated over micro-batches of
that size, so the global minibatch (and the method) stays as configured. A run at the authors' v2
batches on one GPU (``sched.gpu_batches``) is first raised, per resolution, to the largest minibatch of
the authors' 2-, 4- or 8-GPU presets that fits, with that preset's learning rate (:func:`pick_v2_presets`).
"""
from __future__ import annotations

import copy
import dataclasses
import gc

import torch

from ..config import TrainConfig
from ..schedule import V2_PRESETS, batch_for, levels, phase_for_level, v2_batch
from ..util.device import synchronize
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
        synchronize(trainer.device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        trainer.opt_G.zero_grad(set_to_none=True)
        trainer.opt_D.zero_grad(set_to_none=True)
        gc.collect()
        if trainer.device.type == "cuda":
            torch.cuda.empty_cache()


def probe(cfg: TrainConfig, images, device: torch.device):
    """``fits(res, n)``: whether one step of ``n`` images per device at ``res`` fits this device."""
    probe_cfg = copy.deepcopy(cfg)
    probe_cfg.sched.device_batch_cap = {}
    trainer = Trainer(probe_cfg, images, device)
    return lambda res, n: step_fits(trainer, res, n)


def trained_levels(cfg: TrainConfig) -> list[int]:
    return levels(cfg.sched.start_resolution if cfg.sched.growing else cfg.net.resolution, cfg.net.resolution)


def pick_v2_presets(cfg: TrainConfig, fits, log=print) -> dict:
    """{resolution: GPU count} of the authors' v2 preset whose global minibatch to train at on one GPU:
    the largest that fits (of equal minibatches, the preset for fewer GPUs); resolutions where only
    preset-v2-1gpu's fits are left out."""
    chosen = {}
    for res in trained_levels(cfg):
        best, best_batch = 1, v2_batch(res)
        for gpus in sorted(V2_PRESETS)[1:]:
            n = v2_batch(res, gpus)
            if n > best_batch:
                if not fits(res, n):
                    break                   # the presets' minibatches only grow with the GPU count
                best, best_batch = gpus, n
        if best > 1:
            chosen[res] = best
            log(f"auto_batch: {res}x{res}: minibatch {best_batch} fits one GPU; the authors' preset-v2-{best}gpus "
                f"minibatch and learning rate instead of preset-v2-1gpu's {v2_batch(res)}")
    return chosen


def find_batch_caps(cfg: TrainConfig, images, device: torch.device, dist_info, fits=None, log=print) -> dict:
    """{resolution: per-device cap} for the resolutions whose share of the minibatch does not fit.

    Every rank probes its own device with a single-process Trainer (no collectives can be left half
    done by an out-of-memory error); the ranks then agree on the smallest result per resolution."""
    fits = fits or probe(cfg, images, device)
    caps = {}
    start = max(min(cfg.net.mbstd_group_size, 4), 1)
    for res in trained_levels(cfg):
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
    return caps


def release() -> None:
    """What the probes held goes back to the device, once the caller has dropped its ``fits``."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
