"""The front door of the data package: training data at a resolution from any supported spec."""
from __future__ import annotations

import itertools
import os

import numpy as np

from ..util.device import MAX_MEMORY_FRACTION, available_memory
from .base import IMAGE_EXTENSIONS, DataError, ImageSet
from .builtin import BUILTIN
from .create import ConvertOptions, prepare_many, select_keys
from .dataset import is_dataset, open_dataset
from .sources import FolderSource, open_source

DECODE_WINDOW = 256          # files read and decoded at a time (their bytes are held only while they are)


def check_data(spec: str, resolution: int, channels: int, count: int, seed: int = 0, copies: int = 1) -> None:
    """What :func:`load_images` refuses before it decodes anything: data that does not exist, a folder or
    archive without images or whose images would not fit in memory (``copies``: the processes on this
    machine that each decode them)."""
    _check_exists(spec)
    if not spec.startswith("builtin:") and not is_dataset(spec):
        _files(spec, resolution, channels, count, seed, copies)


def load_images(spec: str, resolution: int, channels: int, count: int, seed: int = 0, copies: int = 1) -> ImageSet:
    """Training data at ``resolution``: a pggan dataset folder (memory-mapped), or ``builtin:NAME`` or a
    folder / archive of images (decoded in memory by the same code as ``pggan dataset create``, a window
    of files at a time)."""
    _check_exists(spec)
    if is_dataset(spec):
        ds = open_dataset(spec, resolution)
        if ds.channels != channels:
            raise DataError(f"dataset '{spec}' has {ds.channels} channel(s) but the network expects {channels}; "
                            f"set --set net.channels={ds.channels}")
        return ds
    source, opts, keys = _files(spec, resolution, channels, count, seed, copies)
    images = np.empty((len(keys), channels, resolution, resolution), np.uint8)
    labels, report, kept, bad = [], [], 0, 0
    files = source.read(set(keys))
    while window := list(itertools.islice(files, DECODE_WINDOW)):
        decoded, window_labels, skipped = prepare_many(window, opts, report=report)
        bad += skipped
        if decoded is not None:
            images[kept:kept + len(decoded)] = decoded
            kept += len(decoded)
            labels += window_labels or []
    if not kept:
        raise DataError(f"none of the {len(keys)} files in '{spec}' could be read; first problem: {report[0]}")
    return ImageSet.from_full(images[:kept], np.asarray(labels) if labels else None, len(source.label_names),
                              description=f"{source.describe()} ({kept} images, {bad} skipped)")


def folder_images(folder: str, resolution: int | None = None, channels: int = 3) -> ImageSet:
    """Every image of a folder (e.g. what ``pggan generate`` wrote), at ``resolution`` or, by default,
    the size of its first image (sorted by name), which must be a square power of two."""
    if not os.path.isdir(folder):
        raise DataError(f"--images '{folder}' is not a folder; give the folder of images to score, e.g. the one "
                        "`pggan generate --outdir` wrote")
    names = FolderSource(folder).keys()
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{folder}'")
    if resolution is None:
        from PIL import Image
        try:
            with Image.open(os.path.join(folder, names[0])) as im:
                w, h = im.size
        except OSError as e:
            raise DataError(f"cannot read '{os.path.join(folder, names[0])}': {e}") from None
        if w != h or w < 4 or w & (w - 1):
            raise DataError(f"'{names[0]}' in '{folder}' is {w}x{h}, not a square power of two; give --resolution R "
                            "to score the folder's images resized to RxR")
        resolution = w
    return load_images(folder, resolution, channels, len(names))


def _check_exists(spec: str) -> None:
    if not spec.startswith("builtin:") and not os.path.exists(spec):
        raise DataError(f"data '{spec}' does not exist; give a dataset made by `pggan dataset create`, a folder "
                        f"or archive of images, or builtin:NAME ({', '.join('builtin:' + b for b in BUILTIN)})")


def _files(spec: str, resolution: int, channels: int, count: int, seed: int, copies: int):
    """(source, options, keys) of a folder, archive or builtin set, checked (see :func:`check_data`)."""
    source = open_source(spec, count=count, resolution=resolution, seed=seed, channels=channels)
    opts = ConvertOptions(resolution=resolution, channels=channels, max_count=count, small="upscale").validate()
    keys = select_keys(source, opts)
    if not keys:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{spec}'")
    # decoded with every lower level (a third more), in each process on this machine
    need, free = copies * len(keys) * channels * resolution ** 2 * 4 // 3, available_memory()
    if need > MAX_MEMORY_FRACTION * free:
        each = f" in each of {copies} processes" if copies > 1 else ""
        raise DataError(f"training on '{spec}' decodes its {len(keys)} images into memory{each}: {need / 2 ** 30:.1f} "
                        f"GiB at {resolution}x{resolution}, more than half of the {free / 2 ** 30:.1f} GiB available; "
                        f"make a dataset on disk first (pggan dataset create '{spec}' DATASET --resolution "
                        f"{resolution}) and train with --data DATASET, or use fewer images (--set data_count=N)")
    return source, opts, keys
