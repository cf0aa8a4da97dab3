"""Quality in a fixed wall-clock budget, on a real image set: train, then compare with the data.

    python tools/build_icon_set.py --out icons
    python tools/quality_budget.py --data icons/ds32 --resolution 32 --budget 25m
    python tools/quality_budget.py --data icons/ds32 --resolution 32 --kimg 150 --desc kimg150   # a hand-chosen length
    python tools/quality_budget.py --data icons/ds32 --resolution 32 --run RUN --network RUN/checkpoint-000400.000.pt

Runs `pggan train` as a user would (a new process, its wall time measured from outside), then measures
what `pggan generate --seeds 0-(N-1)` writes from the final G_ema (N: the set's size; a clustered
network draws each seed's cluster from its prior, as for every user) with SWD (x1e3; the levels and
their average):
- `fake_vs_real`: all the set's images against the N generated ones,
- `fake_vs_real_paired` (clustered runs only, for comparison): the same network with fake i drawn in
  real image i's cluster, an internal draw that no command makes,
- `half`: the generated images of a random half of the seeds against the other half of the real set, and
  `floor`: the two halves against each other (two samples of the same data: what no generator can beat
  at this sample size),
and with --fid (Inception weights, or `auto`: those `pggan metrics` finds) FID and KID (x1e3) of the first
split's half of the generated files against the other half of the reals, and their floor (the two real
halves: the same sample sizes), the real images' features cached in OUTDIR;
`fake_vs_real` the mean of --swd-repeats SWDs with different random descriptors, `half` and `floor` the
means over --splits random halves (the ratio of one network moved from 0.93 to 1.61 between splits of
the emoji: the 16x16 level of a half is noisy),
and, from the run's last checkpoint (or --network's), `d_overfit`: how well its D tells the real images
from its G's, with ADA's overfitting heuristic (0: D cannot tell them apart, 1: it has memorised the
reals); and writes quality.png (real grid left, the final grid right) into the run directory. One JSON line per
run is appended to OUTDIR/quality.jsonl.
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pggan.api import checkpoint_level, load_generator, stored_classes
from pggan.augment import overfit_signal
from pggan.checkpoint import checkpoint_config, list_checkpoints, load_checkpoint, load_state
from pggan.data.clusters import cluster_labels
from pggan.data.load import load_images
from pggan.layers import fade_images
from pggan.metrics.fid import frechet_distance
from pggan.metrics.inception import load_inception
from pggan.metrics.kid import kernel_inception_distance
from pggan.metrics.swd import swd
from pggan.networks import Discriminator, Generator
from pggan.training.rundir import fakes_name, run_options
from pggan.util.files import kimg_tag


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, required=True)
    length = ap.add_mutually_exclusive_group(required=True)
    length.add_argument("--budget", help="e.g. 25m")
    length.add_argument("--kimg", type=float)
    length.add_argument("--run", help="measure this finished run directory instead of training one")
    ap.add_argument("--network", help="with --run: measure this checkpoint of the run (G_ema) instead of its final "
                    "generator, e.g. to compare runs at the same kimg")
    ap.add_argument("--outdir", default="quality-runs")
    ap.add_argument("--desc", default="")
    ap.add_argument("--init", help="fine-tune this network (pggan train --init)")
    ap.add_argument("--seed", type=int, default=0, help="of the SWD halves and draws")
    ap.add_argument("--swd-repeats", type=int, default=3, help="SWDs with other descriptor draws, averaged")
    ap.add_argument("--splits", type=int, default=5, help="random halves the half comparison and floor average over")
    ap.add_argument("--fid", metavar="WEIGHTS", help="also FID and KID of the first split (auto: the weights "
                    "`pggan metrics` would find)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to pggan train")
    args = ap.parse_args()
    if args.network and not args.run:
        ap.error("--network needs --run")

    os.makedirs(args.outdir, exist_ok=True)
    cmd = [sys.executable, "-m", "pggan", "train", "--data", args.data, "--resolution", str(args.resolution),
           "--outdir", args.outdir, "--no-progress"]
    cmd += ["--budget", args.budget] if args.budget else ["--kimg", str(args.kimg)] if args.kimg else []
    cmd += ["--desc", args.desc] if args.desc else []
    cmd += ["--init", args.init] if args.init else []
    for item in args.set:
        cmd += ["--set", item]
    if args.run:
        run = args.run
    else:
        start, run = time.time(), None
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
            for line in proc.stdout:        # shown as it comes; the run's own line names its directory
                print(line, end="", flush=True)
                if run is None and line.startswith("run directory "):
                    run = line[len("run directory "):].strip()
        wall = time.time() - start
        if proc.returncode:
            return proc.returncode

    gen = load_generator(args.network or os.path.join(run, "generator-final.safetensors"))
    if args.run:                # the wall time the run had taken when it wrote this network
        stats = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
        wall = [s for s in stats if not args.network or s["kimg"] <= gen.kimg + 1e-6][-1]["wall_s"]
    real_set = load_images(args.data, args.resolution, gen.net.channels, 10 ** 9)
    real = np.asarray(real_set.levels[args.resolution])
    # the fakes are what a user gets: the files `pggan generate --seeds 0-(N-1)` writes
    fakes = generated_files(gen.source, len(real))
    opts = run_options(run)
    paired = None
    if opts.get("clusters"):   # the old internal draw, for comparison: fake i with real image i's cluster
        classes = cluster_labels(real_set, opts["clusters"], opts["seed"])
        paired = torch.cat([torch.from_numpy(gen.generate(seeds=range(i, min(i + 256, len(real))),
                                                          labels=classes[i:i + 256]).images)
                            for i in range(0, len(real), 256)]).permute(0, 3, 1, 2).float()
    reals = torch.from_numpy(real.copy()).float()

    def mean(runs):
        levels = {r: sum(x["levels"][r] for x in runs) / len(runs) for r in runs[0]["levels"]}
        return {"levels": levels, "avg": sum(levels.values()) / len(levels)}

    rng = np.random.default_rng(args.seed)
    n = len(real) // 2
    halves = [rng.permutation(len(real))[: 2 * n].reshape(2, n) for _ in range(args.splits)]
    half = [swd(fakes[a], reals[b], seed=args.seed + i) for i, (a, b) in enumerate(halves)]
    floor = [swd(reals[a], reals[b], seed=args.seed + i) for i, (a, b) in enumerate(halves)]
    result = {
        "run": run, "network": gen.source, "kimg": gen.kimg, "command": "" if args.run else " ".join(cmd[2:]),
        "wall_s": round(wall, 1), "images": len(real),
        "fake_vs_real": mean([swd(fakes, reals, seed=args.seed + i) for i in range(args.swd_repeats)]),
        "half": mean(half), "floor": mean(floor),
        "half_over_floor_per_split": [h["avg"] / f["avg"] for h, f in zip(half, floor)],
    }
    result["half_over_floor"] = result["half"]["avg"] / result["floor"]["avg"]
    if paired is not None:
        result["fake_vs_real_paired"] = mean([swd(paired, reals, seed=args.seed + i) for i in range(args.swd_repeats)])
    if args.fid:
        result.update(inception_scores(args, real_set, reals, fakes, halves[0]))
    ckpt_path = args.network if str(args.network).endswith(".pt") else (list_checkpoints(run) or [None])[-1]
    if ckpt_path:
        result["d_overfit"] = d_overfit(ckpt_path, reals, args.seed)
    grids = [Image.open(os.path.join(run, "reals.png"))]
    fakes_grid = sorted(glob.glob(os.path.join(run, "fakes*.png")))[-1]
    out_png = os.path.join(run, "quality.png")
    if args.network:            # the grid written with this checkpoint, named by the same kimg
        nimg = round(gen.kimg * 1000)
        if os.path.exists(os.path.join(run, fakes_name(nimg))):
            fakes_grid = os.path.join(run, fakes_name(nimg))
        out_png = os.path.join(run, f"quality-{kimg_tag(nimg)}.png")
    grids.append(Image.open(fakes_grid))
    side = Image.new("RGB", (grids[0].width * 2 + 8, grids[0].height), "white")
    side.paste(grids[0], (0, 0))
    side.paste(grids[1], (grids[0].width + 8, 0))
    side.save(out_png)
    with open(os.path.join(args.outdir, "quality.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    print(f"{run}: {wall / 60:.1f} min; SWD x1e3 avg: all {result['fake_vs_real']['avg']:.2f}, "
          f"half {result['half']['avg']:.2f}, real-vs-real floor {result['floor']['avg']:.2f} "
          f"(ratio {result['half_over_floor']:.2f}, per split {_ratios(result)}); "
          f"levels {_levels(result['half'])} vs floor {_levels(result['floor'])}; "
          f"{out_png}")
    if "fid" in result:
        print(f"FID of half the generated files vs the other half of the reals {result['fid']['half']:.2f}, floor "
              f"{result['fid']['floor']:.2f} (ratio {result['fid']['half'] / result['fid']['floor']:.2f}); KID x1e3 "
              f"{result['kid']['half']:.2f}, floor {result['kid']['floor']:.2f}")
    if paired is not None:
        p = result["fake_vs_real_paired"]["avg"]
        print(f"the same network with fake i drawn in real image i's cluster (not what any command writes): all "
              f"{p:.2f}; pggan generate / paired = {result['fake_vs_real']['avg'] / p:.3f}")
    if "d_overfit" in result:
        print(f"D's overfitting heuristic (ADA's, 1 = memorised) on all real images: {result['d_overfit']['signal']:.2f}")
    return 0


def inception_scores(args, real_set, reals: torch.Tensor, fakes: torch.Tensor, split) -> dict:
    """FID and KID (x1e3) of fakes[a] against reals[b], and of reals[a] against reals[b] (the floor)."""
    net = load_inception(None if args.fid == "auto" else args.fid)
    key = f"{os.path.abspath(args.data)}|{args.resolution}|{len(reals)}|{net.weights_sha256}"
    path = os.path.join(args.outdir, f"inception-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([net(x[i:i + 64])[0] for i in range(0, len(x), 64)]).double()

    if os.path.exists(path):
        real_f = torch.from_numpy(np.load(path))
    else:
        real_f = features(reals)
        np.save(path, real_f.numpy())
    a, b = split
    fake_f = features(fakes[a])

    def fid(x, y):
        x, y = x.numpy(), y.numpy()
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))

    kid = lambda x, y: 1e3 * kernel_inception_distance(y, x, subset_size=min(1000, len(a)))  # noqa: E731
    return {"fid": {"half": fid(fake_f, real_f[b]), "floor": fid(real_f[a], real_f[b]), "n": len(a),
                    "weights": net.weights_path},
            "kid": {"half": kid(fake_f, real_f[b]), "floor": kid(real_f[a], real_f[b])}}


def generated_files(network: str, n: int) -> torch.Tensor:
    """Runs `pggan generate --network NETWORK --seeds 0-(n-1)` into a temporary folder and reads the PNGs
    back: float [n, C, H, W] in 0..255."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pggan", "generate", "--network", network, "--seeds", f"0-{n - 1}",
                        "--outdir", tmp], check=True, stdout=subprocess.DEVNULL)
        images = [np.asarray(Image.open(os.path.join(tmp, f"seed{s:04d}.png"))) for s in range(n)]
    x = torch.from_numpy(np.stack(images)).float()
    return (x[..., None] if x.ndim == 3 else x).permute(0, 3, 1, 2)


@torch.no_grad()
def d_overfit(ckpt_path: str, reals: torch.Tensor, seed: int, batch: int = 16) -> dict:
    """How well the checkpoint's D tells every real image from as many images of its G (not G_ema: the
    pairing D is trained against), scored as in the D step: reals and fakes in one pass, each minibatch
    with its own statistics. ``signal`` is ADA's overfitting heuristic (pggan.augment.overfit_signal)."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = checkpoint_config(ckpt)
    res_log2, alpha = checkpoint_level(ckpt, cfg)
    G, D = Generator(cfg.net).eval(), Discriminator(cfg.net).eval()
    load_state(G, ckpt["G"], "G", ckpt_path)
    load_state(D, ckpt["D"], "D", ckpt_path)
    reals = F.interpolate(reals / 127.5 - 1.0, size=2 ** res_log2, mode="area")   # uint8 range -> [-1, 1]
    reals = fade_images(reals, alpha)   # mid-fade, as the D step shows them
    draw = torch.Generator().manual_seed(seed)
    prior = stored_classes(ckpt.get("classes"), cfg.net, "clusters" if cfg.clusters else "labels", ckpt_path)
    real_scores, fake_scores = [], []
    for i in range(0, len(reals) - batch + 1, batch):     # a conditional G's classes drawn as pggan generate does
        labels = F.one_hot(torch.from_numpy(prior.draw(range(i, i + batch))), prior.size).float() if prior else None
        fakes = G(torch.randn(batch, cfg.net.latent_size, generator=draw), labels, res_log2, alpha)
        scores = D(torch.cat([reals[i:i + batch], fakes]), res_log2, alpha, chunks=2)[:, 0]   # [2 * batch]
        real_scores.append(scores[:batch])
        fake_scores.append(scores[batch:])
    r, f = torch.cat(real_scores), torch.cat(fake_scores)
    return {"network": ckpt_path, "signal": float(overfit_signal(r, f)), "real_score": [float(r.mean()), float(r.std())],
            "fake_score": [float(f.mean()), float(f.std())]}


def _ratios(r: dict) -> str:
    return "/".join(f"{v:.2f}" for v in r["half_over_floor_per_split"])


def _levels(r: dict) -> str:
    return "/".join(f"{v:.1f}" for v in r["levels"].values())


if __name__ == "__main__":
    sys.exit(main())
