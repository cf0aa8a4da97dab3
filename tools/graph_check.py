"""Do training steps replayed as CUDA graphs compute what eager steps compute? (#35)

For each case (the paper's WGAN-GP with a lazy penalty, LSGAN with its adaptive noise, the logistic loss
with adaptive augmentation, a conditional run in micro-batches, a resumed run whose learning rates fall)
and each precision, two trainers start from the same seed and take the same steps, one eager and one
through ``Trainer.use_graphs``, across a stabilise phase at 4x4 and the fade into 8x8 (the graphs are
captured, replayed, and captured again at the new level). It prints, per case, the largest relative
difference of the step's losses and of the weights of G, D and G_ema at the end, ||graph - eager|| /
||eager||, and whether both are inside the tolerance of floating-point reordering (cuDNN may pick other
kernels inside a capture) with the learning rates on the parameters' device. Exit code 1 when any case
is outside it or not finite.

    python tools/graph_check.py --device cuda --precision fp32,bf16 --json OUT/graphs.json

``--mock`` replays by calling the captured function again instead of a CUDA capture (any device): the
numbers must then agree to rounding, which checks this script and everything of the graph path but the driver.

On a GPU it first checks what a multi-GPU run's graphs rely on: an NCCL all-reduce captured in a CUDA graph
(in a one-process group) sums again at every replay. tests/test_distributed.py checks the rest of the
multi-process graph path with two gloo processes and the capture mocked.
"""
from __future__ import annotations

import argparse
import io
import json
import sys

import torch

from pggan.config import set_option, validate
from pggan.presets import get_preset
from pggan.training.graphs import ReplayBackend
from pggan.training.plan import run_data
from pggan.training.trainer import Trainer

CASES = {
    "wgangp-lazy": {"loss.penalty_every": 2},
    "lsgan-noise": {"loss.kind": "lsgan"},
    "logistic-ada": {"loss.kind": "logistic", "aug.policy": "translation,cutout,color", "aug.adaptive": True,
                     "aug.speed_kimg": 0.1},
    "conditional-micro": {"conditional": True, "sched.device_batch_cap": {4: 4, 8: 4, 16: 4}, "sched.accumulate": True},
    # resumed mid-fade from a checkpoint loaded as --resume loads it (to the CPU), then captured again, and
    # the learning rates falling from 3e-3 to 1e-3 over the replays: a graph must read them live
    "resume-rampdown": {"sched.total_kimg": 0.53, "sched.lr_rampdown": 0.1},
}
RESUME_AT = {"resume-rampdown": 8}     # the step at which the case's trainers are saved and reloaded
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}     # after a dozen Adam steps; tf32/bf16 kernels differ more


def config(case: str, precision: str):
    cfg = get_preset("cpu-small")
    cfg.precision, cfg.data, cfg.data_count, cfg.outdir = precision, "builtin:shapes", 128, "unused"
    cfg.net.resolution, cfg.net.fmap_base, cfg.net.fmap_max, cfg.net.latent_size = 16, 128, 64, 64
    cfg.sched.lod_training_kimg = cfg.sched.lod_transition_kimg = 0.4
    cfg.sched.batch_base, cfg.sched.batch_table = 16, {}
    return with_case(cfg, case)


def with_case(cfg, case: str):
    """``cfg`` with the case's options set, validated."""
    for path, value in CASES[case].items():
        cfg = set_option(cfg, path, value)
    return validate(cfg)


def train(cfg, device: torch.device, steps: int, graphs, start_nimg: int, resume_at: int | None = None):
    """``steps`` steps from ``start_nimg``; graphs None (eager) or a backend ("cuda" for the real one);
    at step ``resume_at`` the trainer is saved and a new one continues from the checkpoint."""
    cfg, images = run_data(cfg)
    t = trainer(cfg, images, device, graphs, [])
    t.cur_nimg = start_nimg
    losses = []
    for i in range(steps):
        if i == resume_at:
            buf = io.BytesIO()
            torch.save(t.state_dict(), buf)
            buf.seek(0)
            t = trainer(cfg, images, device, graphs, t.captures)
            t.load_state_dict(torch.load(buf, map_location="cpu", weights_only=True), "graph_check")
        out = t.step()
        losses.append({k: float(v) for k, v in out.stats.items()})
    return t, losses


def trainer(cfg, images, device: torch.device, graphs, captures: list) -> Trainer:
    t = Trainer(cfg, images, device)          # seeds the random numbers: build one trainer at a time
    t.captures = captures
    if graphs is not None:
        why = t.use_graphs(log=t.captures.append, backend=None if graphs == "cuda" else graphs)
        if why:
            raise SystemExit(f"graph_check: CUDA graphs are not possible here: {why} (use --mock off a GPU)")
    return t


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def compare(case: str, precision: str, device: torch.device, steps: int, backend) -> dict:
    cfg = config(case, precision)
    start = int(cfg.sched.lod_training_kimg * 1000) - 6 * cfg.sched.batch_base   # 6 steps before the fade
    resume_at = RESUME_AT.get(case)
    eager, eager_losses = train(cfg, device, steps, None, start, resume_at)
    graphed, graph_losses = train(cfg, device, steps, backend, start, resume_at)
    loss_diff = max(abs(g[k] - e[k]) / max(abs(e[k]), 1e-3)
                    for e, g in zip(eager_losses, graph_losses) for k in e)
    weights = {name: max(rel(p, q) for p, q in zip(getattr(graphed, name).state_dict().values(),
                                                 getattr(eager, name).state_dict().values()) if p.is_floating_point())
               for name in ("G", "D", "G_ema")}
    worst = max([loss_diff, *weights.values()])
    tol = TOLERANCE[precision] if backend == "cuda" else 1e-6   # the mock: G_ema's lerp by a device weight
    # fused Adam reads a rate on another device than its parameters on the host: once, at capture
    lr_on_device = all(g["lr"].device == g["params"][0].device
                       for opt in (graphed.opt_G, graphed.opt_D) for g in opt.param_groups)
    ok = worst == worst and worst <= tol and lr_on_device          # NaN fails
    return {"case": case, "precision": precision, "steps": steps, "loss_rel": loss_diff, "weights_rel": weights,
            "tolerance": tol, "captures": len(graphed.captures), "lr_on_device": lr_on_device, "ok": ok}


def nccl_capture_ok(device: torch.device) -> bool:
    """Capture ``x += 1; all_reduce(x)`` in a one-rank NCCL group and replay it twice: x reads 0 after the
    capture (it runs nothing), then 1 and 2."""
    import torch.distributed as dist
    try:
        index = torch.cuda.current_device() if device.index is None else device.index
        dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1,
                                device_id=torch.device("cuda", index))
        x = torch.zeros(1024, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):        # warm-up: NCCL's communicator is set up outside the capture
            dist.all_reduce(x)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            x += 1
            dist.all_reduce(x)
        seen = [float(x.mean())]
        for _ in range(2):
            graph.replay()
            seen.append(float(x.mean()))
        ok = seen == [0.0, 1.0, 2.0]
    except (RuntimeError, ValueError) as e:  # no NCCL in this build, or the capture failed
        seen, ok = repr(e), False
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(f"NCCL all-reduce in a CUDA graph: {seen} after capture and two replays: {'yes' if ok else 'NO'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--mock", action="store_true", help="replay by calling the captured function (no CUDA)")
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not args.mock:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    backend = ReplayBackend() if args.mock else "cuda"
    nccl_ok = nccl_capture_ok(device) if backend == "cuda" and device.type == "cuda" else True
    rows = []
    print(f"{'case':<20}{'prec':<6}{'captures':>9}{'loss rel':>11}{'G rel':>10}{'D rel':>10}{'G_ema rel':>11}  ok")
    for prec in args.precision.split(","):
        for case in args.cases.split(","):
            r = compare(case, prec, device, args.steps, backend)
            rows.append(r)
            w = r["weights_rel"]
            print(f"{case:<20}{prec:<6}{r['captures']:>9}{r['loss_rel']:>11.2e}{w['G']:>10.2e}{w['D']:>10.2e}"
                  f"{w['G_ema']:>11.2e}  {'yes' if r['ok'] else 'NO'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if nccl_ok and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
