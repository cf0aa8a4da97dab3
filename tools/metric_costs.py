"""What each metric costs, and its noise floor: the value between two halves of the same real data.

    python tools/metric_costs.py --data icons/ds32 --resolution 32
    python tools/metric_costs.py --data icons/ds32 --resolution 32 --inception pt_inception-2015-12-05-6726825d.pth

For each metric, one evaluation of the first half of the data set ("generated") against the second half
(real), through the same Evaluator that `pggan metrics` and training use, with an empty feature cache:
the seconds it took, scaled to 1,000 images per set, and its value, which is the floor no generator can
beat at this sample size. Without --inception the Inception-v3 is the real architecture with random
weights: its cost is the real one, its values mean nothing (they are not printed). Same for --vgg16.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from tiny_inception import write_tiny_inception  # noqa: E402

from pggan.data.load import load_images  # noqa: E402
from pggan.metrics.evaluate import Evaluator, MetricOptions  # noqa: E402

MEANING = {"swd": "distance of 7x7 Laplacian-pyramid patch distributions, per level (x1e3): detail and colour",
           "msssim": "mean MS-SSIM of random pairs: variety (lower = more varied); compare with the real pairs'",
           "fid": "Frechet distance of Inception pool features (Gaussians): realism and variety, biased at small N",
           "is": "Inception Score: confident and varied ImageNet classes (meaningful for ImageNet-like data)",
           "kid": "unbiased squared MMD of Inception features, cubic kernel (x1e3): like FID without the bias",
           "pr": "precision (share of generated inside the real k-NN manifold) and recall (the reverse)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, required=True)
    ap.add_argument("--count", type=int, default=2000, help="images read from the data (split in two halves)")
    ap.add_argument("--inception")
    ap.add_argument("--vgg16")
    ap.add_argument("--metrics", default="swd,msssim,fid,is,kid,pr")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--together", action="store_true",
                    help="evaluate the metrics in one pass (FID and KID share their features: one cost for both)")
    a = ap.parse_args()
    torch.manual_seed(0)
    images = load_images(a.data, a.resolution, 3, a.count, 0)
    level = np.asarray(images.levels[a.resolution])
    half = len(level) // 2
    perm = np.random.default_rng(0).permutation(len(level))
    first, second = (torch.from_numpy(level[perm[i * half:(i + 1) * half]]).float() for i in range(2))
    with tempfile.TemporaryDirectory() as tmp:
        inception = a.inception or write_tiny_inception(os.path.join(tmp, "random-inception.pth"), div=1)
        print(f"{len(level)} images of {a.data} at {a.resolution}x{a.resolution}: {half} against {half}; torch threads "
              f"{torch.get_num_threads()}; Inception: {'the given weights' if a.inception else 'random weights'}")
        print("| metric | what it measures | seconds per 1,000 images | floor (half vs half) |")
        print("| --- | --- | --- | --- |")
        groups = [a.metrics.split(",")] if a.together else [[name] for name in a.metrics.split(",")]
        for names in groups:
            name = names[0]
            opts = MetricOptions(names, num=half, pairs=a.pairs, inception=inception, vgg16=a.vgg16,
                                 cache_dir=os.path.join(tmp, f"cache-{name}"), kid_subset_size=min(1000, half))
            ev = Evaluator(opts, torch.device("cpu"))
            start = time.time()
            r = ev.evaluate(lambda idx: first[list(idx)] if name != "msssim" else first[[i % half for i in idx]],
                            lambda idx: second[torch.as_tensor(np.asarray(idx))], half, "halves")
            seconds = time.time() - start
            per = seconds * 1000 / (2 * opts.pairs if name == "msssim" else half)
            for name in names:
                meaningful = name in ("swd", "msssim") or (name == "pr" and a.vgg16) or a.inception
                floor = value(name, r) if meaningful else "n/a (random Inception weights)"
                print(f"| {name} | {MEANING[name]} | {per:.2f} | {floor} |", flush=True)
    return 0


def value(name: str, r: dict) -> str:
    if name == "swd":
        return f"{r['swd']['avg']:.2f} (" + ", ".join(f"{k}: {v:.2f}" for k, v in r["swd"]["levels"].items()) + ")"
    if name == "msssim":
        return f"{r['msssim']:.4f} (pairs within one half)"
    if name == "is":
        return f"{r['is']['mean']:.3f} (IS of real images)"
    if name == "pr":
        return f"precision {r['pr']['precision']:.3f}, recall {r['pr']['recall']:.3f}"
    return f"{r[name]:.3f}"


if __name__ == "__main__":
    sys.exit(main())
