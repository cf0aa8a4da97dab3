"""Where a training step's time goes: the D and G steps of the reference network at 32x32 (counted FLOPs,
time, GFLOP/s), the share of convolutions in the profiled step, and the forward and backward speed of
its 3x3 convolution on their own.

    python tools/step_split.py
"""
import time

import torch
import torch.nn.functional as F

from pggan.bench import reference_config
from pggan.data.images import load_images
from pggan.flops import count_flops
from pggan.schedule import Phase
from pggan.training.loop import Trainer


def seconds(fn, n=6):
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


cfg = reference_config("fp32")
images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
trainer = Trainer(cfg, images, torch.device("cpu"))
ph = Phase(kimg=0, lod=0.0, res_log2=5, alpha=1.0, batch=16, g_lr=1e-3, d_lr=1e-3)
trainer.step(ph)
micro = [slice(0, 16)]
for name, fn in (("D step", lambda: trainer._d_step(ph, micro)), ("G step", lambda: trainer._g_step(ph, micro))):
    flops = count_flops(fn)["total"]
    dt = seconds(fn)
    print(f"{name}: {dt * 1e3:.0f} ms, {flops / 1e9:.1f} GFLOP, {flops / dt / 1e9:.0f} GFLOP/s")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        trainer.step(ph)
ops = prof.key_averages()
total = sum(e.self_cpu_time_total for e in ops)
conv = sum(e.self_cpu_time_total for e in ops if "convolution" in e.key)
print(f"profiled steps: convolutions (forward and backward) {100 * conv / total:.0f} % of the time")
for n in (16, 32):
    x = torch.randn(n, 128, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(128, 128, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    flops = 2 * n * 128 * 128 * 9 * 32 * 32
    fwd = seconds(lambda: F.conv2d(x, w, padding=1), 10)
    g = torch.randn(n, 128, 32, 32).contiguous(memory_format=torch.channels_last)
    bwd = seconds(lambda: torch.autograd.grad(F.conv2d(x, w, padding=1), (x, w), g), 10) - fwd
    print(f"conv3x3 batch {n}, 128 maps, 32x32: forward {flops / fwd / 1e9:.0f} GFLOP/s, "
          f"backward (input and weight) {2 * flops / bwd / 1e9:.0f} GFLOP/s")
