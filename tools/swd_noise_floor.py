"""SWD between two disjoint samples of builtin:shapes (the metric's noise floor) and its run time.

    python tools/swd_noise_floor.py --res 64 --num 16384
"""
import argparse
import time

import torch

from pggan.data.builtin import render_builtin
from pggan.metrics.swd import swd

p = argparse.ArgumentParser()
p.add_argument("--res", type=int, default=64)
p.add_argument("--num", type=int, default=2048)
args = p.parse_args()
a = torch.from_numpy(render_builtin("shapes", args.num, args.res, 3, seed=0))
b = torch.from_numpy(render_builtin("shapes", args.num, args.res, 3, seed=1))
start = time.time()
r = swd(a.split(256), b.split(256), seed=0)
print(f"{args.num} vs {args.num} images at {args.res}x{args.res}: SWD x1e3 per level "
      f"{ {k: round(v, 2) for k, v in r['levels'].items()} }, average {r['avg']:.2f}; {time.time() - start:.1f} s")
