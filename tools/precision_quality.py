"""Does bf16 train as well as fp32? Trains the built-in dataset in fp32 (two seeds: the run-to-run noise)
and in bf16 (the first seed) for the same number of images, then compares the SWD of each final G_ema
to the data and writes their grids side by side.

    python tools/precision_quality.py --kimg 12 --res 16 --outdir precision-runs

bf16 passes when |SWD(bf16) - SWD(fp32, seed 0)| is within the fp32 seed-to-seed difference (x 1.5 + the
metric's own noise floor at this image count, measured here between two samples of the real data).
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from pggan.api import load_generator
from pggan.data.load import load_images
from pggan.metrics.swd import swd
from pggan.presets import get_preset
from pggan.training.run import run_training as train
from pggan.util.grids import make_grid, save_png

p = argparse.ArgumentParser()
p.add_argument("--kimg", type=float, default=12.0)
p.add_argument("--res", type=int, default=16)
p.add_argument("--num", type=int, default=1024, help="images per SWD set")
p.add_argument("--outdir", default="precision-runs")
args = p.parse_args()


def config(precision: str, seed: int):
    cfg = get_preset("cpu-small")
    cfg.net.resolution, cfg.precision, cfg.seed, cfg.outdir = args.res, precision, seed, args.outdir
    cfg.sched.total_kimg = args.kimg
    cfg.sched.lod_training_kimg = cfg.sched.lod_transition_kimg = args.kimg / (2 * (args.res.bit_length() - 3) + 1)
    cfg.image_kimg = cfg.checkpoint_kimg = 0
    cfg.desc = f"{precision}-seed{seed}"
    return cfg


images = load_images("builtin:shapes", args.res, 3, max(10000, 2 * args.num), 0)
level = torch.from_numpy(np.asarray(images.levels[args.res])).float()
floor = swd(level[:args.num], level[args.num:2 * args.num], seed=0)["avg"]
rows, grids = [], []
for precision, seed in (("fp32", 0), ("fp32", 1), ("bf16", 0)):
    start = time.time()
    run = train(config(precision, seed), progress=False, echo=lambda m: None).run_dir
    gen = load_generator(os.path.join(run, "generator-final.safetensors"))
    fakes = torch.from_numpy(gen.generate(seeds=range(args.num)).images).permute(0, 3, 1, 2).float()
    value = swd(fakes, level[:args.num], seed=0)["avg"]
    rows.append({"precision": precision, "seed": seed, "swd": value, "train_s": time.time() - start, "run": run})
    grids.append(make_grid(gen.generate(seeds=range(36)).images, 6, max(args.res, 32)))
    print(f"{precision} seed {seed}: SWD x1e3 {value:.2f} ({rows[-1]['train_s']:.0f} s)", flush=True)

noise = abs(rows[1]["swd"] - rows[0]["swd"])
gap = abs(rows[2]["swd"] - rows[0]["swd"])
verdict = "PASS" if gap <= 1.5 * noise + floor else "FAIL"
summary = {"kimg": args.kimg, "res": args.res, "num": args.num, "noise_floor": floor, "seed_to_seed": noise,
           "bf16_gap": gap, "verdict": verdict, "runs": rows}
os.makedirs(args.outdir, exist_ok=True)
save_png(os.path.join(args.outdir, "fp32-seed0_fp32-seed1_bf16-seed0.png"), np.concatenate(grids, axis=1))
with open(os.path.join(args.outdir, "precision_quality.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(f"real-vs-real floor {floor:.2f}; fp32 seed-to-seed {noise:.2f}; bf16 vs fp32 {gap:.2f}: {verdict}")
