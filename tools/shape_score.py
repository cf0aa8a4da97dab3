"""How clearly a generator trained on builtin:shapes draws the set's three shapes, as a number.

    python tools/shape_score.py runs/00000-shapes-32-demo [more runs or networks ...]

A small CNN learns to tell the built-in set's discs, rounded squares and triangles apart (images of data
seed 1, not the seed 0 that training uses; about a minute on two cores) and is checked on held-out images
of seed 2. It then classifies --num images of each generator (a run directory's final generator, or a
checkpoint / .safetensors) and prints:
- `clear`: the share of images it gives one shape with probability at least 0.9 (real images: about 1),
- the shares of discs, squares and triangles among the clear ones (the data: a third each),
- for a conditional generator (asked for each shape in turn), `as_asked`: the share of the clear images
  that show the shape asked for.
A run whose squares and discs come out as the same rounded blob scores a low `clear` and few squares.
One JSON line per generator goes to --jsonl when given.
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pggan.api import load_generator
from pggan.checkpoint import list_checkpoints
from pggan.data.builtin import SHAPE_KINDS, render_shape, shape_kind

CLASSES = SHAPE_KINDS + ("blob",)
BLOB = len(SHAPE_KINDS)
CONFIDENT = 0.9


def shapes(count: int, resolution: int, seed: int, blobs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] [count, 3, R, R] and their classes [count]. With ``blobs``, every other square
    and triangle has its corners rounded by 35-60 % of its size (class "blob"): half-way to a disc."""
    rng = np.random.default_rng(seed)
    images, classes = np.empty((count, 3, resolution, resolution), np.uint8), []
    for i in range(count):
        kind, rounding = shape_kind(seed, i), 0.0
        if blobs and kind != 0 and i % 2:
            kind, rounding = BLOB, rng.uniform(0.35, 0.6)
        images[i] = render_shape(seed, i, resolution, rounding=rounding)
        classes.append(kind)
    return torch.from_numpy(images).float() / 127.5 - 1.0, torch.tensor(classes)


def classifier(resolution: int) -> nn.Module:
    layers, ch, res = [], 3, resolution
    for out in (32, 64, 128):
        layers += [nn.Conv2d(ch, out, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(out, out, 3, padding=1, stride=2),
                   nn.LeakyReLU(0.2)]
        ch, res = out, res // 2
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, len(CLASSES)))


def train_classifier(resolution: int, count: int = 8192, epochs: int = 8) -> nn.Module:
    torch.manual_seed(0)
    images, classes = shapes(count, resolution, seed=1)
    net = classifier(resolution)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(count).split(64):
            x = images[idx]
            x = x + 0.1 * torch.randn_like(x)          # generated images are noisy: decide by the silhouette
            loss = F.cross_entropy(net(x), classes[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def score(net: nn.Module, images: torch.Tensor, asked: torch.Tensor | None = None) -> dict:
    """``asked``: the class each image was generated for (a conditional generator), else None."""
    p = torch.cat([F.softmax(net(x), dim=1) for x in images.split(256)])
    conf, kind = p.max(dim=1)
    clear = (conf >= CONFIDENT) & (kind != BLOB)
    counts = torch.bincount(kind[clear], minlength=len(CLASSES)).float()[:BLOB]
    shares = (counts / counts.sum().clamp(min=1)).tolist()
    out = {"clear": round(float(clear.float().mean()), 3), "blob": round(float((kind == BLOB).float().mean()), 3),
           **{k: round(s, 3) for k, s in zip(SHAPE_KINDS, shares)}}
    if asked is not None:       # the share of the clear images that show the shape asked for
        out["as_asked"] = round(float((kind[clear] == asked[clear]).float().mean()) if clear.any() else 0.0, 3)
    return out


def generated(gen, num: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` images of ``gen`` (seeds 0..num-1); a conditional one is asked for class ``seed % 3`` in
    turn, its classes taken to be SHAPE_KINDS in order (as builtin:shapes and sorted folder names give)."""
    if not gen.net.label_size:
        return gen.generate(seeds=range(num)).tensor.clamp(-1, 1), None
    if gen.net.label_size != len(SHAPE_KINDS):
        raise SystemExit(f"error: {gen.source} has {gen.net.label_size} classes, not the {len(SHAPE_KINDS)} shapes")
    asked = torch.arange(num) % len(SHAPE_KINDS)
    return gen.generate(seeds=range(num), labels=asked).tensor.clamp(-1, 1), asked


def network_path(path: str) -> str:
    if os.path.isdir(path):
        final = os.path.join(path, "generator-final.safetensors")
        found = [final] if os.path.exists(final) else list_checkpoints(path)
        if not found:
            raise SystemExit(f"error: {path} has no generator-final.safetensors and no checkpoint")
        return found[-1]
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("networks", nargs="+", help="run directories, checkpoints or .safetensors files")
    ap.add_argument("--num", type=int, default=1024, help="generated images per network")
    ap.add_argument("--jsonl", help="append one JSON line per network here")
    args = ap.parse_args()

    gens = [(p, load_generator(network_path(p))) for p in args.networks]
    resolution = gens[0][1].resolution
    for path, gen in gens:
        if gen.resolution != resolution:
            raise SystemExit(f"error: {path} is {gen.resolution}x{gen.resolution}; score one resolution at a time")
    net = train_classifier(resolution)
    held_out, classes = shapes(1024, resolution, seed=2)
    with torch.no_grad():
        accuracy = float((net(held_out).argmax(dim=1) == classes).float().mean())
    reals, _ = shapes(1024, resolution, seed=2, blobs=False)
    print(f"classifier: {accuracy:.3f} accuracy on held-out shapes and blobs; the data set: {score(net, reals)}")
    for _, gen in gens:
        result = {"network": gen.source, "kimg": gen.kimg, **score(net, *generated(gen, args.num))}
        print(json.dumps(result))
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
