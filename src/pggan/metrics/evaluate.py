"""``pggan metrics``: SWD and MS-SSIM of a trained generator against its data, appended to the run."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from ..api import load_generator
from ..data.images import load_images
from .msssim import msssim_among
from .swd import swd

AVAILABLE = ("swd", "msssim")


def _real_batches(images, resolution: int, num: int, seed: int, batch: int):
    level = images.levels[resolution]
    if len(level) < num:
        raise ValueError(f"the data has {len(level)} images; --num {num} needs at least that many")
    idx = np.sort(np.random.default_rng(seed).choice(len(level), size=num, replace=False))
    for i in range(0, num, batch):
        yield torch.from_numpy(np.asarray(level[idx[i:i + batch]])).float()


def _fake_images(gen, num: int, seed: int, batch: int) -> torch.Tensor:
    """uint8-range float images of seeds seed*1_000_000 + 0..num-1 (the same for the same seed)."""
    labels = None
    out = []
    for i in range(0, num, batch):
        seeds = [seed * 1_000_000 + j for j in range(i, min(i + batch, num))]
        if gen.net.label_size:
            labels = [s % gen.net.label_size for s in seeds]
        out.append(torch.from_numpy(gen.generate(seeds=seeds, labels=labels).images).permute(0, 3, 1, 2).float())
    return torch.cat(out)


def evaluate(network: str, data: str, metrics=AVAILABLE, num: int = 2048, seed: int = 0, pairs: int = 10000,
             device: str = "cpu", batch: int = 64, data_count: int = 10000) -> dict:
    unknown = [m for m in metrics if m not in AVAILABLE]
    if unknown:
        raise ValueError(f"unknown metric '{unknown[0]}'; available: {', '.join(AVAILABLE)} "
                         f"(FID and IS are not implemented yet)")
    start = time.time()
    gen = load_generator(network, device=device)
    res, channels = gen.net.resolution, gen.net.channels
    fakes = _fake_images(gen, num, seed, batch)
    result = {"network": os.path.abspath(network), "data": data, "num": num, "seed": seed, "resolution": res}
    if "swd" in metrics:
        images = load_images(data, res, channels, max(data_count, num), seed)
        result["swd"] = swd(_real_batches(images, res, num, seed, batch), fakes.split(batch), seed=seed)
    if "msssim" in metrics:
        result["msssim"] = msssim_among(fakes, pairs=pairs, seed=seed)
    result["seconds"] = time.time() - start
    return result


def append_results(run_dir: str, result: dict, kimg: float | None) -> list[str]:
    """One JSON line per metric in ``metric-<name>.jsonl`` beside the checkpoint."""
    written = []
    for name in AVAILABLE:
        if name in result:
            rec = {k: result[k] for k in ("network", "data", "num", "seed", "resolution", "seconds")}
            rec.update({"kimg": kimg, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), name: result[name]})
            path = os.path.join(run_dir, f"metric-{name}.jsonl")
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            written.append(path)
    return written
