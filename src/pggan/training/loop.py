"""The training loop: one D step then one G step per minibatch, driven by the schedule."""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import resource
import signal

import numpy as np
import torch

from ..config import TrainConfig
from ..data.images import DataOrder, ImageSet, minibatch
from ..layers import fade_images
from ..losses import LSGANNoise, d_loss, g_loss
from ..networks import Discriminator, Generator
from ..schedule import Phase, phase_at, starts_new_phase
from .checkpoint import CheckpointError, load_state
from .dist import DistInfo, all_mean, average_gradients, broadcast_module
from .images import make_grid, to_uint8

STAT_KEYS = ("loss_d", "loss_g", "score_real", "score_fake", "penalty")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available here; use --device cpu or auto")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for but MPS is not available here; use --device cpu or auto")
    return dev


def precision_note(device: torch.device, precision: str) -> str | None:
    """A warning when bf16 is asked of a CPU without native bf16 (no AVX-512-BF16 or AMX): PyTorch then
    runs bf16 convolutions through a slow fallback."""
    if device.type != "cpu" or precision != "bf16":
        return None
    native = any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    if native:
        return None
    return ("note: this CPU has no native bf16 (no AVX-512-BF16 or AMX); bf16 convolutions run through a slow "
            "fallback, about 10-15x slower than fp32 here: consider --precision fp32")


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    """Holds everything a run needs to continue exactly; ``step()`` trains one minibatch."""

    def __init__(self, cfg: TrainConfig, images: ImageSet, device: torch.device, dist_info: DistInfo = DistInfo()):
        if cfg.precision == "fp16" and device.type != "cuda":
            raise RuntimeError("precision fp16 needs a CUDA device; use bf16 or fp32 here")
        self.cfg, self.images, self.device = cfg, images, device
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2 ** 32)
        self.G = Generator(cfg.net).to(device)
        self.D = Discriminator(cfg.net).to(device)
        self.dist = dist_info
        if dist_info.enabled:
            broadcast_module(self.G)
            broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if cfg.channels_last:
            for m in (self.G, self.D, self.G_ema):
                m.to(memory_format=torch.channels_last)
        o = cfg.optim
        fused = device.type in ("cpu", "cuda")
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.sched.lr_base, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.sched.lr_base, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused)
        amp16 = cfg.precision == "fp16"
        self.scaler_G = torch.amp.GradScaler(device.type, enabled=amp16)
        self.scaler_D = torch.amp.GradScaler(device.type, enabled=amp16)
        self.compiled(cfg.compile)
        self._g_params = list(self.G.parameters())
        self._d_params = list(self.D.parameters())
        self._ema_pairs = (list(self.G_ema.parameters()), self._g_params,
                           list(self.G_ema.buffers()), list(self.G.buffers()))
        self.order = DataOrder(len(images), cfg.seed, cfg.mirror)
        self.lsgan = LSGANNoise()
        self.cur_nimg = 0
        self.prev_lod: float | None = None
        self.wall_offset = 0.0
        self._label_pool = (torch.from_numpy(images.labels) if images.labels is not None and images.label_size else None)

    def compiled(self, on: bool) -> None:
        """Run G and D through torch.compile (or not). The modules and their parameters stay the same;
        the gradient penalties always use the eager D, since compiled graphs have no double backward."""
        if on and not hasattr(self, "_compiled"):
            self._compiled = (torch.compile(self.G), torch.compile(self.D))
        self.G_run, self.D_run = self._compiled if on else (self.G, self.D)

    # ---- one minibatch -------------------------------------------------------------------
    def phase(self) -> Phase:
        return phase_at(self.cur_nimg, self.cfg.sched, self.cfg.net.resolution, self.dist.world)

    def _rounds(self, share: int, res: int) -> int:
        """Gradient-accumulation rounds so that no micro-batch exceeds the per-device cap."""
        cap = self.cfg.sched.device_batch_cap.get(res)
        if cap is None or share <= cap:
            return 1
        r = -(-share // int(cap))
        while share % r:
            r += 1
        return r

    def _shared_draws(self, n: int, with_mix: bool):
        """Latents, penalty mixing factors and fake labels for the whole global minibatch, drawn on the
        CPU the same way on every rank (so the run does not depend on the number of ranks); only this
        rank's slice is moved to the device."""
        lo, hi = self.dist.rank * n // self.dist.world, (self.dist.rank + 1) * n // self.dist.world
        z = torch.randn(n, self.G.z_dim)[lo:hi].to(self.device)
        mix = torch.rand(n, 1, 1, 1)[lo:hi].to(self.device) if with_mix else None
        labels = None
        if self._label_pool is not None:
            idx = torch.randint(len(self._label_pool), (n,))[lo:hi]
            labels = torch.nn.functional.one_hot(self._label_pool[idx], self.images.label_size).float().to(self.device)
        return z, mix, labels

    def _finish(self, opt, scaler, params) -> None:
        if self.dist.enabled:
            average_gradients(params, self.dist.world)
        scaler.step(opt)
        scaler.update()

    def step(self, ph: Phase | None = None) -> dict:
        """Train one minibatch at the schedule's phase (or at ``ph``, for benchmarks): n_critic D steps,
        each followed by the G_ema update, then one G step."""
        ph = ph or self.phase()
        self.last_phase = ph
        if self.prev_lod is None or (self.cfg.optim.reset_on_phase and starts_new_phase(self.prev_lod, ph.lod)):
            self.opt_G.state.clear()
            self.opt_D.state.clear()
        self.prev_lod = ph.lod
        for opt, lr in ((self.opt_G, ph.g_lr), (self.opt_D, ph.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        if ph.batch % self.dist.world:
            raise RuntimeError(f"the minibatch {ph.batch} at {ph.resolution}x{ph.resolution} cannot be split over "
                               f"{self.dist.world} processes; use a batch_table with multiples of {self.dist.world}")
        share = ph.batch // self.dist.world
        rounds = self._rounds(share, ph.resolution)
        micro = [slice(i * share // rounds, (i + 1) * share // rounds) for i in range(rounds)]
        for _ in range(self.cfg.optim.n_critic):
            stats = self._d_step(ph, micro)
            self.cur_nimg += ph.batch
            self._update_ema(ph.batch)
        stats["loss_g"] = self._g_step(ph, micro)
        return stats

    def _d_step(self, ph: Phase, micro: list[slice]) -> dict:
        cfg, k, alpha = self.cfg, ph.res_log2, ph.alpha
        amp = autocast_for(self.device, cfg.precision)
        cl = torch.channels_last if cfg.channels_last else torch.contiguous_format
        reals_all, labels_all = minibatch(self.images, self.order, ph.batch, ph.resolution, self.device,
                                          self.dist.rank, self.dist.world)
        z, mix, fake_labels = self._shared_draws(ph.batch, cfg.loss.kind == "wgangp")
        self.D.noise_strength = self.lsgan.strength if cfg.loss.kind == "lsgan" and cfg.loss.lsgan_noise else 0.0
        self.opt_D.zero_grad(set_to_none=True)
        grad_scale = self.scaler_D.get_scale() if self.scaler_D.is_enabled() else 1.0   # one host sync, fp16 only
        stats: dict = {}
        for sl in micro:
            reals = fade_images(reals_all[sl], alpha).contiguous(memory_format=cl)
            labels = labels_all[sl] if labels_all is not None else None
            with torch.no_grad(), amp:
                fakes = self.G_run(z[sl], fake_labels[sl] if fake_labels is not None else None, k, alpha)
            with amp:
                loss, s = d_loss(cfg.loss, self.D_run, reals, fakes, labels, k, alpha,
                                 mix=None if mix is None else mix[sl], grad_scale=grad_scale, D_penalty=self.D)
            self.scaler_D.scale(loss / len(micro)).backward()
            for key, v in s.items():
                stats[key] = stats.get(key, 0.0) + v / len(micro)
        self._finish(self.opt_D, self.scaler_D, self._d_params)
        if cfg.loss.kind == "lsgan":
            score = stats["score_fake"]
            self.lsgan.update(float(all_mean(score, self.dist.world) if self.dist.enabled else score))
        return stats

    def _g_step(self, ph: Phase, micro: list[slice]) -> torch.Tensor:
        amp = autocast_for(self.device, self.cfg.precision)
        z, _, fake_labels = self._shared_draws(ph.batch, False)
        self.opt_G.zero_grad(set_to_none=True)
        total = 0.0
        for sl in micro:
            labels = fake_labels[sl] if fake_labels is not None else None
            with amp:
                fakes = self.G_run(z[sl], labels, ph.res_log2, ph.alpha)
                loss, s = g_loss(self.cfg.loss, self.D_run, fakes, labels, ph.res_log2, ph.alpha)
            self.scaler_G.scale(loss / len(micro)).backward(inputs=self._g_params)   # no gradients for D's weights
            total = total + s["loss_g"] / len(micro)
        self._finish(self.opt_G, self.scaler_G, self._g_params)
        return total

    @torch.no_grad()
    def _update_ema(self, batch: int) -> None:
        beta = self.cfg.optim.ema_beta
        if self.cfg.optim.ema_rampup > 0:
            horizon = max(self.cur_nimg * self.cfg.optim.ema_rampup / batch, 1.0)   # in steps
            beta = min(beta, 1.0 - 1.0 / horizon)
        ema_p, p, ema_b, b = self._ema_pairs
        torch._foreach_lerp_(ema_p, p, 1.0 - beta)
        if ema_b:
            torch._foreach_copy_(ema_b, b)

    # ---- snapshots -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": _python_rng_state(), "numpy": _numpy_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg.to_json(), "cur_nimg": self.cur_nimg, "prev_lod": self.prev_lod,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict(),
            "data_order": self.order.state(), "lsgan_d_hat": self.lsgan.d_hat, "rng": rng,
            "wall_time": self.wall_offset,
        }

    def load_state_dict(self, ckpt: dict, path: str) -> None:
        if "opt_G" not in ckpt:
            raise CheckpointError(f"'{path}' holds networks without training state (converted or exported); "
                                  f"use it with generate, interpolate or metrics, not --resume")
        for name in ("G", "D", "G_ema"):
            load_state(getattr(self, name), ckpt[name], name, path)
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.opt_D.load_state_dict(ckpt["opt_D"])
        if ckpt.get("scaler_G"):
            self.scaler_G.load_state_dict(ckpt["scaler_G"])
            self.scaler_D.load_state_dict(ckpt["scaler_D"])
        self.cur_nimg, self.prev_lod = int(ckpt["cur_nimg"]), ckpt["prev_lod"]
        self.order = DataOrder(len(self.images), self.cfg.seed, self.cfg.mirror, **ckpt["data_order"])
        self.lsgan = LSGANNoise(float(ckpt["lsgan_d_hat"]))
        self.wall_offset = float(ckpt["wall_time"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(_tuple_state(ckpt["rng"]["python"]))
        _set_numpy_rng_state(ckpt["rng"]["numpy"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)

    @torch.no_grad()
    def grid(self, z: torch.Tensor, labels) -> np.ndarray:
        ph = self.phase()
        with autocast_for(self.device, self.cfg.precision):
            images = self.G_ema(z.to(self.device), labels, ph.res_log2, ph.alpha)
        return make_grid(to_uint8(images), self.cfg.grid_size, self.cfg.net.resolution)


def _python_rng_state():
    v, state, gauss = random.getstate()
    return [v, list(state), gauss]


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def _set_numpy_rng_state(s: dict) -> None:
    np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))


def _tuple_state(s):
    return (s[0], tuple(s[1]), s[2])


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def grid_latents(cfg: TrainConfig, label_size: int):
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    n = cfg.grid_size ** 2
    z = torch.randn(n, cfg.net.z_dim, generator=g)
    labels = None
    if label_size:
        labels = torch.nn.functional.one_hot(torch.arange(n) % label_size, label_size).float()
    return z, labels


class StopRequest:
    """Set by SIGINT/SIGTERM (or a test callback): the loop saves a checkpoint and returns."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum, frame):
        self.signal = signum

    @contextlib.contextmanager
    def installed(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _crossed(prev_nimg: int, cur_nimg: int, every_kimg: float) -> bool:
    if every_kimg <= 0:
        return False
    every = every_kimg * 1000.0
    return math.floor(cur_nimg / every) > math.floor(prev_nimg / every)


def format_tick(tick: int, ph: Phase, s: dict) -> str:
    return (f"tick {tick:<5d} kimg {s['kimg']:<9.1f} res {ph.resolution:<4d} lod {ph.lod:<6.3f} alpha {ph.alpha:<5.3f} "
            f"batch {ph.batch:<4d} loss_d {s['loss_d']:+9.4f} loss_g {s['loss_g']:+9.4f} img/s {s['img_per_s']:8.1f} "
            f"sec/kimg {s['sec_per_kimg']:8.2f} mem {s['mem_mb']:8.1f}MB time {_fmt_time(s['wall_s'])}")


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{(s // 60) % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def write_json_line(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_stats(path: str, max_kimg: float) -> None:
    """On resume, drop stats of ticks after the checkpoint: they belong to a trajectory now discarded."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line in f if line.strip() and (json.loads(line).get("kimg") or 0) <= max_kimg + 1e-9]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(keep)
    os.replace(tmp, path)
