"""``pggan bench``: how close training runs to this machine's convolution peak.

Measures, in one process: the 3x3 convolution peak (fp32 and bf16, channels_last), the training
step's images/s at each resolution in a stabilise and a fade phase, the FLOPs one step executes
(counted by :mod:`pggan.flops`), achieved GFLOP/s and its share of the peak, the step's fixed cost
(what does not shrink with the batch) and number of operations, peak memory and the data loader's
images/s at the same level, reading a memory-mapped dataset with mirroring on. On a CUDA GPU every
step is measured twice, eager and replayed as a CUDA graph (training/graphs.py). ``project_run``
times every phase of a preset and sums kimg x sec/kimg into the run's length on this device.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import torch
import torch.nn.functional as F

from .config import NetworkConfig, TrainConfig
from .data.dataset import DatasetWriter, open_dataset
from .flops import count_flops
from .presets import get_preset
from .schedule import V2_BATCH, Phase, batch_for, phase_for_level, phase_kimg
from .training.graphs import WARMUP, graph_support
from .training.plan import RunRequest, plan_run, run_data
from .training.sampler import DataOrder, minibatch
from .training.trainer import Trainer
from .util.device import configure_cuda, peak_memory_mb, resolve_precision, synchronize
from .util.timing import timeit

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


PEAK_SHAPES = ((16, 128, 32), (16, 128, 16), (64, 128, 8), (16, 64, 64))
# A GPU reaches its peak only on the paper's widest layers: on an H200 the shapes above gave 95 TFLOP/s
# in fp32 and the paper's 512-map 32x32 step ran at 114 % of that "peak".
GPU_PEAK_SHAPES = PEAK_SHAPES + ((16, 512, 32), (64, 512, 16))


def conv_peak(precision: str, device: torch.device, shapes=None, seconds: float = 0.5) -> dict:
    """Best GFLOP/s of 3x3 convolutions [N, C, R, R] -> C, the shapes the networks use: forward (the
    peak), backward (input and weight gradients), and the step bound: a training step's FLOPs are one
    third forward and two thirds backward, so no step can beat 3 / (1 / forward + 2 / backward)."""
    shapes = shapes or (GPU_PEAK_SHAPES if device.type == "cuda" else PEAK_SHAPES)
    results = []
    for n, c, r in shapes:
        x = torch.randn(n, c, r, r, device=device).to(DTYPES[precision]).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3, device=device).to(DTYPES[precision]).contiguous(memory_format=torch.channels_last)
        g = torch.randn(n, c, r, r, device=device).to(DTYPES[precision]).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        w.requires_grad_(True)

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, padding=1)
            synchronize(device)

        def both():
            torch.autograd.grad(F.conv2d(x, w, padding=1), (x, w), g)
            synchronize(device)
        flops = 2 * n * c * c * 9 * r * r
        fwd, _ = timeit(forward, seconds)
        total, _ = timeit(both, seconds)
        f, b = flops / fwd / 1e9, 2 * flops / max(total - fwd, 1e-9) / 1e9
        results.append({"shape": [n, c, r], "gflops": f, "backward_gflops": b, "step_bound_gflops": 3 / (1 / f + 2 / b)})
    return {"precision": precision, "peak_gflops": max(x["gflops"] for x in results),
            "step_bound_gflops": max(x["step_bound_gflops"] for x in results), "shapes": results}


def reference_config(precision: str) -> TrainConfig:
    """The issue's reference network: 32x32, 128 maps everywhere, latent 128, batch 16, WGAN-GP."""
    cfg = TrainConfig(precision=precision, data="builtin:shapes", data_count=256,
                      net=NetworkConfig(resolution=32, fmap_max=128, latent_size=128))
    cfg.sched.batch_base = 16
    return cfg


def paper_config(precision: str, resolution: int, batch: int) -> TrainConfig:
    cfg = TrainConfig(precision=precision, data="builtin:shapes", data_count=64, net=NetworkConfig(resolution=resolution))
    cfg.sched.batch_base = batch
    return cfg


def paper_batch(res: int, device: torch.device) -> int:
    """The paper widths' minibatch: on a GPU the authors' one-GPU v2 schedule (128 at 4-16 down to 4 at
    512 and 1024), which gives each launch its work; on a CPU 16 up to 32x32 and 4 above, which keeps
    the measurement to minutes."""
    if device.type == "cuda":
        return V2_BATCH.get(res, 4)
    return 16 if res <= 32 else 4


def on_disk(images, folder: str):
    """The same images as a memory-mapped dataset, so the loader is measured as training reads it."""
    import numpy as np

    writer = DatasetWriter(os.path.join(folder, "bench-dataset"), images.resolution, images.channels)
    writer.add(np.asarray(images.levels[images.resolution]))
    writer.close("bench")
    return open_dataset(os.path.join(folder, "bench-dataset"))


def measure_steps(cfg: TrainConfig, device: torch.device, resolutions, seconds: float, fades: bool = True) -> list[dict]:
    return list(iter_steps(cfg, device, resolutions, seconds, fades))


def iter_steps(cfg: TrainConfig, device: torch.device, resolutions, seconds: float, fades: bool = True):
    """One result row per resolution and phase, as soon as it is measured."""
    cfg, images = run_data(cfg, device)           # as a run plans it: its classes, precision and batches
    trainer, graphed = Trainer(cfg, images, device), graphed_trainer(cfg, images, device)
    tmp = tempfile.TemporaryDirectory()
    stored = on_disk(images, tmp.name)
    for res in resolutions:
        for alpha in ((1.0, 0.5) if fades and res > 4 else (1.0,)):
            ph = phase_for_level(res, alpha, cfg.sched.batch_base, cfg.sched, cfg.net.resolution)
            step = _step_fn(trainer, ph, device)
            trainer.compiled(False)              # FLOPs are counted on the eager ops (compiled kernels hide them)
            counted = count_flops(step)
            flops = counted["total"]
            trainer.compiled(cfg.compile)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            dt, n = timeit(step, seconds, warmup=3 if cfg.compile else 1)
            mem = peak_memory_mb(device)
            order = DataOrder(len(stored), 0, True)
            load_dt, _ = timeit(lambda: minibatch(stored, order, ph.batch, res, device), min(seconds, 0.3), 5)
            row = {"resolution": res, "phase": "stabilise" if alpha == 1.0 else "fade", "batch": ph.batch,
                   "img_per_s": ph.batch / dt, "gflop_per_img": flops / ph.batch / 1e9,
                   "gflops": flops / dt / 1e9, "ops": counted["ops"], "steps_timed": n, "mem_mb": mem,
                   "loader_img_per_s": ph.batch / load_dt}
            if alpha == 1.0 and ph.batch % 4 == 0:
                row["fixed_ms"] = fixed_step_cost(trainer, ph, dt, seconds / 2, device) * 1e3
            if graphed is not None:
                g_dt, _ = timeit(_step_fn(graphed, ph, device), seconds, warmup=WARMUP + 2)
                row["graph_img_per_s"] = ph.batch / g_dt
                if "fixed_ms" in row:
                    row["graph_fixed_ms"] = fixed_step_cost(graphed, ph, g_dt, seconds / 2, device, WARMUP + 2) * 1e3
            yield row
    tmp.cleanup()


def graphed_trainer(cfg: TrainConfig, images, device: torch.device) -> Trainer | None:
    """A second trainer whose steps replay as CUDA graphs, where they can (a CUDA device), else None."""
    if graph_support(cfg, device, 1) is not None:
        return None
    t = Trainer(cfg, images, device)
    t.use_graphs(log=lambda m: None)
    return t


def fixed_step_cost(trainer: Trainer, ph: Phase, dt: float, seconds: float, device: torch.device,
                    warmup: int = 1) -> float:
    """A step's cost that does not grow with the batch (op dispatch, autograd bookkeeping, kernel
    launches, the optimizers), in seconds: with t(B) = fixed + B * per_image, the step time at B
    (``dt``) and at B / 4 give fixed = (4 t(B / 4) - t(B)) / 3."""
    dt_small, _ = timeit(_step_fn(trainer, dataclasses.replace(ph, batch=ph.batch // 4), device), seconds, warmup=warmup)
    return max((4 * dt_small - dt) / 3, 0.0)


def _step_fn(trainer: Trainer, ph: Phase, device: torch.device):
    """One training step at ``ph``, finished (synchronised) when it returns."""
    def step():
        trainer.step(ph)
        synchronize(device)
    return step


def default_precisions(device: torch.device) -> tuple[list[str], str | None]:
    """What ``pggan bench`` measures unless told: fp32, and bf16 where the device computes it natively
    (elsewhere it runs through a slow fallback that no run would choose); and a note on what was left out."""
    prec, why = resolve_precision("auto", device)
    if prec == "bf16":
        return ["fp32", "bf16"], None
    return ["fp32"], f"bf16 left out ({why.removeprefix('auto: ')}); --precision fp32,bf16 measures it anyway"


def run_bench(device: torch.device, precisions=("fp32", "bf16"), paper_max_res: int = 16, seconds: float = 3.0,
              resolutions=(4, 8, 16, 32), log=print, compile: bool = False) -> dict:
    out = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "compile": compile, "cuda": configure_cuda(device), "peaks": {}, "runs": []}
    for prec in precisions:
        if prec == "fp16" and device.type != "cuda":
            continue
        out["peaks"][prec] = conv_peak(prec, device)
        pk = out["peaks"][prec]
        log(f"conv3x3 peak {prec}: {pk['peak_gflops']:.1f} GFLOP/s forward; step bound {pk['step_bound_gflops']:.1f} "
            f"GFLOP/s (1/3 forward + 2/3 backward at the best shape's speeds)")
    for prec in out["peaks"]:
        peak, bound = out["peaks"][prec]["peak_gflops"], out["peaks"][prec]["step_bound_gflops"]
        ref = reference_config(prec)
        ref.compile = compile
        for row in iter_steps(ref, device, resolutions, seconds):
            out["runs"].append(dict(row, network="reference", precision=prec, peak_fraction=row["gflops"] / peak,
                                    bound_fraction=row["gflops"] / bound))
            log(format_row(out["runs"][-1]))
        if paper_max_res >= 4:
            res_list = [2 ** k for k in range(2, 11) if 2 ** k <= paper_max_res]
            for res in res_list:
                cfg = paper_config(prec, res, batch=paper_batch(res, device))
                cfg.compile = compile
                for row in iter_steps(cfg, device, [res], seconds / 2, fades=False):
                    out["runs"].append(dict(row, network="paper", precision=prec, peak_fraction=row["gflops"] / peak,
                                            bound_fraction=row["gflops"] / bound))
                    log(format_row(out["runs"][-1]))
    return out


HEADER = (f"{'network':<10}{'prec':<6}{'res':>5} {'phase':<10}{'batch':>6}{'img/s':>9}{'GFLOP/img':>11}"
          f"{'GFLOP/s':>9}{'%peak':>7}{'%bound':>8}{'fixed ms':>10}{'ops':>6}{'mem MB':>9}{'loader img/s':>14}")
GRAPH_HEADER = f"{'graph img/s':>13}{'graph %peak':>13}{'graph fixed ms':>16}"


def format_row(r: dict) -> str:
    line = (f"{r['network']:<10}{r['precision']:<6}{r['resolution']:>5} {r['phase']:<10}{r['batch']:>6}"
            f"{r['img_per_s']:>9.1f}{r['gflop_per_img']:>11.2f}{r['gflops']:>9.1f}{100 * r['peak_fraction']:>6.0f}%"
            f"{100 * r['bound_fraction']:>7.0f}%{_fixed(r):>10}{r['ops']:>6}{r['mem_mb']:>9.0f}"
            f"{r['loader_img_per_s']:>14.0f}")
    if "graph_img_per_s" in r:
        graph_share = r["peak_fraction"] * r["graph_img_per_s"] / r["img_per_s"]
        line += (f"{r['graph_img_per_s']:>13.1f}{100 * graph_share:>12.0f}%"
                 f"{_fixed(r, 'graph_fixed_ms', 'graph_img_per_s'):>16}")
    return line


def _fixed(r: dict, key: str = "fixed_ms", rate: str = "img_per_s") -> str:
    """The fixed per-step cost and its share of the step, e.g. '15 (58%)'."""
    if key not in r:
        return "-"
    share = r[key] / 1e3 * r[rate] / r["batch"]
    return f"{r[key]:.0f} ({100 * share:.0f}%)"


def device_name(device: torch.device) -> str:
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def project_run(preset: str, device: torch.device, precision: str, seconds: float, log=print,
                auto_batch: bool = False) -> dict:
    """The length of a preset's whole run on this device: every phase (each level stabilising and
    fading in, at the minibatch a run of the preset gets here, with ``auto_batch`` as asked) timed for
    ``seconds``, eager and, on a GPU, as CUDA graphs; the run is the sum over phases of kimg x sec/kimg
    (metrics, snapshots and start-up not included)."""
    cfg = get_preset(preset)
    cfg.precision, cfg.data, cfg.data_count = precision, "builtin:shapes", 64
    cfg.sched.auto_batch = auto_batch
    configure_cuda(device)
    spec, images = plan_run(RunRequest(cfg), device, measure=False)   # the batches a run of the preset gets here
    cfg = spec.config
    for note in spec.notes:
        log(note)
    trainers = {"eager": Trainer(cfg, images, device)}
    graphed = graphed_trainer(cfg, images, device)
    if graphed is not None:
        trainers["graphs"] = graphed
    rows = []
    for res, fading, kimg in phase_kimg(cfg.sched, cfg.net.resolution):
        ph = phase_for_level(res, 0.5 if fading else 1.0, batch_for(res, cfg.sched), cfg.sched, cfg.net.resolution)
        row = {"resolution": res, "phase": "fade" if fading else "stabilise", "kimg": kimg, "batch": ph.batch}
        for mode, t in trainers.items():
            dt, _ = timeit(_step_fn(t, ph, device), seconds, min_iters=2, warmup=WARMUP + 2 if mode == "graphs" else 1)
            row[f"{mode}_sec_per_kimg"] = dt / ph.batch * 1000.0
            row[f"{mode}_hours"] = kimg * row[f"{mode}_sec_per_kimg"] / 3600.0
        rows.append(row)
        log(format_projection_row(row))
    totals = {mode: sum(r[f"{mode}_hours"] for r in rows) for mode in trainers}
    return {"preset": preset, "device": device_name(device), "precision": precision, "phases": rows, "hours": totals}


PROJECTION_HEADER = (f"{'res':>5} {'phase':<10}{'kimg':>8}{'batch':>6}{'sec/kimg':>10}{'hours':>8}"
                     f"{'graph sec/kimg':>16}{'graph hours':>13}")


def format_projection_row(r: dict) -> str:
    line = (f"{r['resolution']:>5} {r['phase']:<10}{r['kimg']:>8.0f}{r['batch']:>6}{r['eager_sec_per_kimg']:>10.2f}"
            f"{r['eager_hours']:>8.2f}")
    if "graphs_hours" in r:
        line += f"{r['graphs_sec_per_kimg']:>16.2f}{r['graphs_hours']:>13.2f}"
    return line


def write_json(path: str, result: dict) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
