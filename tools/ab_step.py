"""A/B timing of one training step with a speed feature on and off, interleaved in one process so that
the machine's drift hits both alike (this VM's clock moves by ~10 % between runs).

    python tools/ab_step.py scale-output --res 4 --paper        # equalized LR: scale the output, not the weight
    python tools/ab_step.py double-backward-convs --res 32      # conv.py's kernels in the penalty pass
    python tools/ab_step.py pixel-norm --res 32 --precision bf16  # bf16 pixel norm off: on an fp32 copy
    python tools/ab_step.py layouts --res 4                     # off: G's dense output and D's flatten in NCHW
    python tools/ab_step.py dense-scale --res 4                 # off: D's dense layers as addmm(.., alpha=scale)

'--all-sizes' applies double-backward-convs below conv.MIN_SIZE too (to re-measure that threshold).
"""
import argparse
import contextlib

import torch

import pggan.conv
import pggan.layers
import pggan.losses
import pggan.networks
from pggan.bench import paper_config, reference_config
from pggan.schedule import Phase
from pggan.training.plan import run_data
from pggan.training.trainer import Trainer
from pggan.util.timing import timeit


def switch(feature: str, on: bool, all_sizes: bool) -> None:
    if feature == "layouts":
        pggan.networks.like_weight = ORIGINAL["like_weight"] if on else (lambda x, weight: x)
        pggan.networks.flatten_channel_major = ORIGINAL["flatten"] if on else (lambda x: x.flatten(1))
    elif feature == "pixel-norm":
        pggan.networks.pixel_norm = ORIGINAL["pixel_norm"] if on else _pixel_norm_fp32
    elif feature == "dense-scale":
        pggan.layers.EqualizedLinear.forward = ORIGINAL["linear"] if on else _linear_addmm
    elif feature == "scale-output":
        pggan.layers._scale_output = ORIGINAL["scale"] if on else (lambda output_numel, weight_numel: False)
    else:
        pggan.losses.double_backward_convs = ORIGINAL["dbc"] if on else contextlib.nullcontext
        pggan.conv.MIN_SIZE = 1 if all_sizes else ORIGINAL["min_size"]


ORIGINAL = {"scale": pggan.layers._scale_output, "dbc": pggan.losses.double_backward_convs,
            "min_size": pggan.conv.MIN_SIZE, "pixel_norm": pggan.networks.pixel_norm,
            "like_weight": pggan.networks.like_weight, "flatten": pggan.networks.flatten_channel_major,
            "linear": pggan.layers.EqualizedLinear.forward}


def _linear_addmm(self, x):
    """The dense layer with a bias as one addmm with alpha=scale (the feature off)."""
    if self.bias is None:
        return ORIGINAL["linear"](self, x)
    return torch.addmm(self.bias, x, self.weight.t(), alpha=self.scale)


def _pixel_norm_fp32(x, eps=1e-8):
    """Pixel norm on an fp32 copy of a reduced-precision activation, cast back (the feature off)."""
    return pggan.layers.pixel_norm(pggan.layers.at_least_fp32(x), eps).to(x.dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("feature", choices=("scale-output", "double-backward-convs", "pixel-norm", "layouts",
                                           "dense-scale"))
    ap.add_argument("--res", type=int, default=4, choices=(4, 8, 16, 32, 64))
    ap.add_argument("--paper", action="store_true", help="the paper's widths instead of the reference network")
    ap.add_argument("--all-sizes", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0, help="per variant and round")
    args = ap.parse_args()
    cfg = paper_config(args.precision, args.res, 16) if args.paper else reference_config(args.precision)
    cfg, images = run_data(cfg)
    trainer = Trainer(cfg, images, torch.device("cpu"))
    k = args.res.bit_length() - 1
    ph = Phase(kimg=0, lod=float(cfg.net.resolution_log2 - k), res_log2=k, alpha=1.0, batch=16, g_lr=1e-3, d_lr=1e-3)
    times = {True: [], False: []}
    for _ in range(args.rounds):
        for on in (True, False):
            switch(args.feature, on, args.all_sizes)
            times[on].append(timeit(lambda: trainer.step(ph), args.seconds, min_iters=2)[0])
    name = ("paper widths" if args.paper else "reference network") + f" ({args.precision})"
    for on in (True, False):
        t = sorted(times[on])
        print(f"{name} {args.res}x{args.res}, {args.feature} {'on ' if on else 'off'}: "
              f"min {t[0] * 1e3:.1f} ms, median {t[len(t) // 2] * 1e3:.1f} ms per step")


if __name__ == "__main__":
    main()
