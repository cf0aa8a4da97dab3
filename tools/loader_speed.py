"""Images/s of the training loader at the top level of a builtin dataset, raw versus PNG-compressed.

    python tools/loader_speed.py --res 256 --count 256
"""
import argparse
import tempfile
import time

import torch

from pggan.data.create import ConvertOptions, create_dataset
from pggan.data.dataset import open_dataset
from pggan.data.sources import open_source
from pggan.training.sampler import DataOrder, minibatch

p = argparse.ArgumentParser()
p.add_argument("--res", type=int, default=256)
p.add_argument("--count", type=int, default=256)
p.add_argument("--batch", type=int, default=16)
args = p.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    for name, compress in (("raw", 0), ("png", args.res)):
        src = open_source("builtin:shapes", count=args.count, resolution=args.res)
        create_dataset(src, f"{tmp}/{name}", ConvertOptions(resolution=args.res, compress_from=compress), progress=False)
        ds, order = open_dataset(f"{tmp}/{name}"), DataOrder(args.count, 0, True)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            minibatch(ds, order, args.batch, args.res, torch.device("cpu"))
            n += args.batch
        print(f"{name}: {n / (time.perf_counter() - start):.0f} img/s at {args.res}x{args.res} (one process)")
