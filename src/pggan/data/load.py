"""The front door of the data package: training data at a resolution from any supported spec."""
from __future__ import annotations

import os

import numpy as np

from .base import IMAGE_EXTENSIONS, DataError, ImageSet
from .builtin import BUILTIN
from .create import ConvertOptions, prepare_many, select_keys
from .dataset import is_dataset, open_dataset
from .sources import open_source


def check_data_exists(spec: str) -> None:
    if not spec.startswith("builtin:") and not os.path.exists(spec):
        raise DataError(f"data '{spec}' does not exist; give a dataset made by `pggan dataset create`, a folder "
                        f"or archive of images, or builtin:NAME ({', '.join('builtin:' + b for b in BUILTIN)})")


def load_images(spec: str, resolution: int, channels: int, count: int, seed: int = 0) -> ImageSet:
    """Training data at ``resolution``: a pggan dataset folder (memory-mapped), or ``builtin:NAME`` or a
    folder / archive of images (decoded in memory by the same code as ``pggan dataset create``)."""
    check_data_exists(spec)
    if is_dataset(spec):
        ds = open_dataset(spec, resolution)
        if ds.channels != channels:
            raise DataError(f"dataset '{spec}' has {ds.channels} channel(s) but the network expects {channels}; "
                            f"set --set net.channels={ds.channels}")
        return ds
    source = open_source(spec, count=count, resolution=resolution, seed=seed, channels=channels)
    opts = ConvertOptions(resolution=resolution, channels=channels, max_count=count, small="upscale").validate()
    keys = select_keys(source, opts)
    if not keys:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{spec}'")
    report: list[str] = []
    images, labels, bad = prepare_many(list(source.read(set(keys))), opts, report=report)
    if images is None:
        raise DataError(f"none of the {len(keys)} files in '{spec}' could be read; first problem: {report[0]}")
    return ImageSet.from_full(images, np.asarray(labels) if labels else None, len(source.label_names),
                              description=f"{source.describe()} ({len(images)} images, {bad} skipped)")
