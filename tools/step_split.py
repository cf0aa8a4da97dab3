"""Where a training step's time goes, by kernel: the reference network's step at one resolution, every
aten call counted and timed (forward convolutions, input gradients, weight gradients, everything else), with the
FLOPs and GFLOP/s of each kind, and the slowest other calls; then the three 3x3 convolution kernels on
their own, on all threads and on one, in the step's precision.

    python tools/step_split.py [--res 32] [--steps 5] [--precision fp32|bf16]
    python tools/step_split.py --budget-network 1 --top 64 --res 64     # a --budget run's own network (x1)
"""
import argparse
import collections
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pggan.bench import DTYPES, reference_config
from pggan.flops import conv_flops
from pggan.presets import cpu_small, scaled_cpu_small
from pggan.schedule import Phase, batch_for
from pggan.training.plan import run_data
from pggan.training.trainer import Trainer
from pggan.util.timing import timeit

aten = torch.ops.aten


class KernelTimer(TorchDispatchMode):
    """Seconds and FLOPs per kind of aten call (on the CPU, where a call returns when its work is done)."""

    def __init__(self):
        super().__init__()
        self.seconds = collections.defaultdict(float)
        self.flops = collections.defaultdict(float)
        self.others = collections.defaultdict(float)         # seconds per aten call outside the convolutions
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - start
        kind, flops = "other (element-wise, matmul, optimizer)", 0
        if func.overloadpacket is aten._to_copy:
            kind = "dtype casts (autocast, the data)"
        elif func.overloadpacket is aten.convolution:
            kind, flops = "conv forward", conv_flops(args[0].shape, args[1].shape, out.shape, bool(args[6]))
        elif func.overloadpacket is aten.convolution_backward:
            grad_out, x, w, mask = args[0], args[1], args[2], args[10]
            kind = {(True, False): "conv input gradient", (False, True): "conv weight gradient"}.get(
                (mask[0], mask[1]), "conv input + weight gradients")
            flops = conv_flops(x.shape, w.shape, grad_out.shape, bool(args[7])) * (int(mask[0]) + int(mask[1]))
        self.seconds[kind] += dt
        if not kind.startswith("conv"):
            self.others[func.overloadpacket.__name__] += dt
        self.flops[kind] += flops
        self.calls += 1
        return out


def kernels(dtype, n=16, c=128, r=32):
    cl = torch.channels_last
    x, g = (torch.randn(n, c, r, r).to(dtype).contiguous(memory_format=cl) for _ in range(2))
    w = torch.randn(c, c, 3, 3).to(dtype).contiguous(memory_format=cl)
    flops = 2 * n * c * c * 9 * r * r

    def bwd(mask):
        return lambda: aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
    return {name: flops / timeit(fn, 0.5, min_iters=10)[0] / 1e9 for name, fn in (
        ("forward", lambda: F.conv2d(x, w, padding=1)),
        ("input gradient", bwd([True, False, False])),
        ("weight gradient", bwd([False, True, False])))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, default=32, choices=(4, 8, 16, 32, 64, 128))
    ap.add_argument("--budget-network", type=int, metavar="SCALE",
                    help="instead: cpu-small's network times SCALE (1, 2, 4, 8), as --budget sizes it, at its batch")
    ap.add_argument("--top", type=int, default=64, help="with --budget-network: the run's resolution")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = ap.parse_args()
    if args.budget_network:
        cfg = cpu_small()
        cfg.precision, cfg.data_count = args.precision, 256
        cfg.net = scaled_cpu_small(replace(cfg.net, resolution=args.top), args.budget_network)
        name, batch = f"cpu-small x{args.budget_network} ({args.top}x{args.top} run)", batch_for(args.res, cfg.sched)
    else:
        cfg, name, batch = reference_config(args.precision), "reference network", 16
    cfg, images = run_data(cfg)
    trainer = Trainer(cfg, images, torch.device("cpu"))
    k = args.res.bit_length() - 1
    ph = Phase(kimg=0, lod=float(cfg.net.resolution_log2 - k), res_log2=k, alpha=1.0, batch=batch, g_lr=1e-3,
               d_lr=1e-3)
    for _ in range(2):
        trainer.step(ph)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(ph)
    plain = (time.perf_counter() - start) / args.steps
    timer = KernelTimer()
    with timer:
        for _ in range(args.steps):
            trainer.step(ph)
    total = sum(timer.seconds.values())
    print(f"{name} ({args.precision}), {args.res}x{args.res}, batch {batch}: {plain * 1e3:.0f} ms per step "
          f"({total / args.steps * 1e3:.0f} ms in {timer.calls / args.steps:.0f} timed aten calls)")
    for kind, s in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        gf = timer.flops[kind] / s / 1e9 if timer.flops[kind] else float("nan")
        print(f"  {kind:<42}{100 * s / total:5.1f} %  {timer.flops[kind] / args.steps / 1e9:7.2f} GFLOP  {gf:6.0f} GFLOP/s")
    slowest = sorted(timer.others.items(), key=lambda kv: -kv[1])[:6]
    print("  slowest other calls: " + ", ".join(f"{name} {100 * s / total:.1f} %" for name, s in slowest))
    threads = torch.get_num_threads()
    for t in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(t)
        speeds = kernels(DTYPES[args.precision])
        print(f"3x3 kernels ({args.precision}), batch 16, 128 maps, 32x32, {t} thread(s): "
              + ", ".join(f"{name} {v:.0f}" for name, v in speeds.items()) + " GFLOP/s")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
