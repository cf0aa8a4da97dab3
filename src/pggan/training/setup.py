"""Before a run starts: its data, and the config resolved from the options, the data and the device.

``resolve_config`` returns a new config and never changes the one it is given: what comes from the
data (the number of classes) and from the device (on one GPU the paper presets' v2 batches,
auto_batch's per-device caps) is written into the copy, which is the config the run saves and resumes with.
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from ..config import TrainConfig
from ..data.base import DataError, ImageSet
from ..data.clusters import with_clusters
from ..data.load import load_images
from ..schedule import use_v2_batches
from ..util.device import resolve_precision
from ..util.dist import DistInfo
from .batchfind import find_batch_caps, pick_v2_presets, probe, release


def load_training_data(cfg: TrainConfig, copies: int = 1) -> ImageSet:
    """The run's images; labels kept only for a conditional run, or made from clusters. ``copies``: the
    processes on this machine that each hold them."""
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed, copies)
    if cfg.clusters:
        return with_clusters(images, cfg.clusters, cfg.seed)
    if cfg.conditional and not images.label_size:
        raise DataError(f"--set conditional=true needs labels, but {images.description} has none")
    if not cfg.conditional:
        images = dataclasses.replace(images, labels=None, label_size=0)
    return images


def run_data(cfg: TrainConfig) -> tuple[TrainConfig, ImageSet]:
    """The images a run of ``cfg`` trains on, and ``cfg`` with its network's classes set from them: what
    benchmarks and checks build their Trainer from, so that they time and test what a run trains."""
    images = load_training_data(cfg)
    cfg = copy.deepcopy(cfg)
    cfg.net.label_size = images.label_size
    return cfg, images


def check_init_labels(cfg: TrainConfig, images: ImageSet) -> None:
    """A fine-tuned network keeps its classes: the run must have the same ones (``cfg.net`` is the network's)."""
    have, want = cfg.net.label_size, images.label_size
    if have and not want:
        raise DataError(f"--init: the network is conditional ({have} classes) but this run is not; train on labelled "
                        f"data with --set conditional=true (pggan does not drop a network's classes)")
    if want and not have:
        raise DataError("--init: the network is unconditional and cannot learn the data's classes; "
                        "leave out --set conditional=true (the labels are then not used)")
    if have != want:
        raise DataError(f"--init: the network has {have} classes, the data {want}")


def resolve_config(cfg: TrainConfig, images: ImageSet, device: torch.device,
                   info: DistInfo = DistInfo(), fresh: bool = True) -> tuple[TrainConfig, list[str]]:
    """(the run's config, notes for the log). A resumed run (not ``fresh``) keeps its batches."""
    cfg = copy.deepcopy(cfg)
    cfg.net.label_size = images.label_size
    cfg.precision, why = resolve_precision(cfg.precision, device)
    notes: list[str] = [] if why == "as asked" else [f"precision {cfg.precision} ({why})"]
    fits = probe(cfg, images, device) if cfg.sched.auto_batch and device.type == "cuda" else None
    if cfg.sched.gpu_batches and device.type == "cuda" and info.world == 1 and fresh:
        notes += _v2_batches(cfg, fits)
    if cfg.sched.auto_batch:
        notes += _auto_batch(cfg, images, device, info, fits)
    if fits is not None:
        fits = None             # the probe's Trainer goes with it
        release()
    return cfg, notes


def _v2_batches(cfg: TrainConfig, fits) -> list[str]:
    """The authors' v2 minibatches, raised where a larger preset's fits (``fits``: auto_batch's probe)."""
    notes: list[str] = []
    presets = pick_v2_presets(cfg, fits, notes.append) if fits is not None else {}
    use_v2_batches(cfg.sched, cfg.net.resolution, presets)
    notes.append(f"gpu_batches v2: on one GPU the authors' v2 minibatches {cfg.sched.batch_table} (4 above) and "
                 f"learning rates {cfg.sched.g_lr_table}; --set sched.gpu_batches= for batch_table")
    return notes


def _auto_batch(cfg: TrainConfig, images: ImageSet, device: torch.device, info: DistInfo, fits) -> list[str]:
    """Fills ``cfg.sched.device_batch_cap`` (and ``accumulate``) from a memory probe on a CUDA device."""
    if device.type != "cuda":
        return [f"auto_batch: applies to CUDA devices; on {device.type} the configured batches are used"]
    notes: list[str] = []
    caps = find_batch_caps(cfg, images, device, info, fits, log=notes.append)
    for res, cap in caps.items():
        cfg.sched.device_batch_cap[res] = min(cap, cfg.sched.device_batch_cap.get(res, cap))
    if caps:
        cfg.sched.accumulate = True
    notes.append(f"auto_batch: per-device caps {cfg.sched.device_batch_cap or 'none needed'}")
    return notes
