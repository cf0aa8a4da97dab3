"""``pggan export``: the generator to share (safetensors + JSON) and an ONNX graph for one resolution,
checked against PyTorch on the same latents."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import warnings

import numpy as np
import torch

from .api import LoadedGenerator, latents_for_seeds
from .checkpoint import save_generator
from .config import TrainConfig
from .util.checks import is_resolution, one_hot
from .util.errors import UsageError
from .util.files import atomic_write


class FixedResolution(torch.nn.Module):
    """G at one resolution (and fade): ``forward(z[, labels])`` -> images [N, C, R, R] in about [-1, 1]."""

    def __init__(self, G: torch.nn.Module, res_log2: int, alpha: float = 1.0):
        super().__init__()
        self.G, self.res_log2, self.alpha = G, res_log2, alpha

    def forward(self, z, labels=None):
        return self.G(z, labels, self.res_log2, self.alpha)


def export_safetensors(gen: LoadedGenerator, out_dir: str, extra: dict) -> list[str]:
    path = os.path.join(out_dir, "generator.safetensors")
    extra = dict(extra, resolution=gen.resolution, alpha=gen.alpha)
    save_generator(path, gen.G, gen.net, extra)
    meta = {"format": "pggan-generator", "net": TrainConfig(net=gen.net).to_dict()["net"], "z_dim": gen.z_dim,
            "label_size": gen.net.label_size, "source": os.path.abspath(gen.source),
            "images": "float [N, C, R, R], about [-1, 1]; uint8 = clip(round((x + 1) * 127.5), 0, 255)", **extra}
    json_path = os.path.join(out_dir, "generator.json")
    atomic_write(json_path, lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    return [path, json_path]


def export_onnx(gen: LoadedGenerator, out_dir: str, resolution: int, opset: int = 18, check_seeds=range(8)) -> dict:
    """Writes generator-<R>.onnx (batch size free) and returns its path and the largest absolute
    difference from PyTorch on the latents of ``check_seeds``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'pggan[onnx]'") from None
    if not is_resolution(resolution, high=gen.net.resolution):
        raise UsageError(f"--resolution must be a power of two from 4 to the generator's {gen.net.resolution}")
    alpha = gen.alpha if resolution == gen.resolution else 1.0      # a mid-fade generator keeps its blend
    model = FixedResolution(gen.G.float().cpu().eval(), int(math.log2(resolution)), alpha)
    z = latents_for_seeds(list(check_seeds), gen.z_dim)
    args, names = (z,), ["z"]
    if gen.net.label_size:
        labels = one_hot(torch.arange(len(z)) % gen.net.label_size, gen.net.label_size)
        args, names = (z, labels), ["z", "labels"]
    batch = torch.export.Dim("batch", min=1, max=4096)
    path = os.path.join(out_dir, f"generator-{resolution}.onnx")
    tmp = path + ".tmp"
    try:
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quiet.setLevel(logging.ERROR)                 # the exporter's notes about absent torchvision ops
            torch.onnx.export(model, args, tmp, input_names=names, output_names=["images"], opset_version=opset,
                              dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True, verbose=False,
                              external_data=False)          # one self-contained file (G is far below 2 GB)
            quiet.setLevel(level)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
        with torch.no_grad():
            want = model(*args).numpy()
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + ".data"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return {"path": path, "max_abs_diff": float(np.abs(got - want).max()), "shape": list(got.shape)}
