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
from .classes import class_uniforms
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


class DrawnClasses(FixedResolution):
    """A generator whose classes pggan made (clusters), used as an unconditional one:
    ``forward(z, class_u)`` with class_u [N] uniform in [0, 1) picks each image's class from the prior by
    its inverse CDF, as ``pggan generate`` does (seed s: pggan.classes.class_uniforms([s]))."""

    def __init__(self, G: torch.nn.Module, res_log2: int, alpha: float, cumulative: np.ndarray):
        super().__init__(G, res_log2, alpha)
        self.register_buffer("cumulative", torch.as_tensor(cumulative, dtype=torch.float32))
        self.classes = len(cumulative) + 1

    def forward(self, z, class_u):
        k = (class_u[:, None] >= self.cumulative[None, :]).sum(1)                     # [N]
        labels = (k[:, None] == torch.arange(self.classes, device=z.device)[None, :]).to(z.dtype)
        return self.G(z, labels, self.res_log2, self.alpha)


def export_safetensors(gen: LoadedGenerator, out_dir: str, extra: dict) -> list[str]:
    path = os.path.join(out_dir, "generator.safetensors")
    extra = dict(extra, resolution=gen.resolution, alpha=gen.alpha)
    if gen.classes is not None:
        extra["classes"] = gen.classes.to_json()
    save_generator(path, gen.G, gen.net, extra)
    meta = {"format": "pggan-generator", "net": TrainConfig(net=gen.net).to_dict()["net"], "z_dim": gen.z_dim,
            "label_size": gen.net.label_size, "source": os.path.abspath(gen.source),
            "images": "float [N, C, R, R], about [-1, 1]; uint8 = clip(round((x + 1) * 127.5), 0, 255)", **extra}
    if gen.classes is not None:
        meta["classes"] = json.loads(extra["classes"])
    json_path = os.path.join(out_dir, "generator.json")
    atomic_write(json_path, lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    return [path, json_path]


def export_onnx(gen: LoadedGenerator, out_dir: str, resolution: int, opset: int = 18, check_seeds=range(8)) -> dict:
    """Writes generator-<R>.onnx (batch size free) and returns its path and the largest absolute
    difference from PyTorch on the images ``generate`` makes for ``check_seeds``. Its inputs: ``z``; a
    generator of the user's classes also ``labels`` (one-hot [N, C]); one of pggan's clusters, used as
    unconditional, ``class_u`` (uniform [N] in [0, 1): the class is drawn from the prior in the graph).
    The class prior is in the model's metadata (``pggan.classes``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'pggan[onnx]'") from None
    if not is_resolution(resolution, high=gen.net.resolution):
        raise UsageError(f"--resolution must be a power of two from 4 to the generator's {gen.net.resolution}")
    alpha = gen.alpha if resolution == gen.resolution else 1.0      # a mid-fade generator keeps its blend
    G, res_log2, seeds = gen.G.float().cpu().eval(), int(math.log2(resolution)), list(check_seeds)
    z = latents_for_seeds(seeds, gen.z_dim)
    model, args, names = FixedResolution(G, res_log2, alpha), (z,), ["z"]
    if gen.classes is not None and gen.classes.implicit:
        model = DrawnClasses(G, res_log2, alpha, gen.classes.cumulative())
        args, names = (z, torch.from_numpy(class_uniforms(seeds)).float()), ["z", "class_u"]
    elif gen.classes is not None:
        args, names = (z, one_hot(torch.from_numpy(gen.class_labels(None, seeds)), gen.classes.size)), ["z", "labels"]
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
        if gen.classes is not None:
            _add_metadata(tmp, {"pggan.classes": gen.classes.to_json()})
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + ".data"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return {"path": path, "max_abs_diff": float(np.abs(got - want).max()), "shape": list(got.shape)}


def _add_metadata(path: str, props: dict) -> None:
    import onnx

    model = onnx.load(path)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, path)
