"""The Trainer: G, D, G_ema and their optimizers, and one minibatch of training (D steps, then a G step)."""
from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..augment import adjust_p, augment, parse_policy
from ..checkpoint import CheckpointError, load_state
from ..classes import ClassPrior
from ..config import TrainConfig
from ..data.base import ImageSet
from ..layers import fade_images
from ..losses import LSGANNoise, d_loss, g_loss
from ..networks import Discriminator, Generator, freeze_d_blocks
from ..schedule import Phase, phase_at, starts_new_phase
from ..util.checks import one_hot
from ..util.device import autocast_for, resolve_precision
from ..util.dist import DistInfo, all_mean, average_gradients, broadcast_module
from ..util.errors import DeviceError, UsageError
from ..util.grids import to_uint8
from .sampler import DataOrder, minibatch


@dataclass(frozen=True)
class Step:
    """What one call of :meth:`Trainer.step` did: the phase it trained at and its (detached) losses."""
    phase: Phase
    stats: dict


class Trainer:
    """Holds everything a run needs to continue exactly; ``step()`` trains one minibatch."""

    def __init__(self, cfg: TrainConfig, images: ImageSet, device: torch.device, dist_info: DistInfo = DistInfo()):
        if cfg.precision == "auto":                     # a run resolves it first; benchmarks and probes here
            cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device)[0])
        if cfg.precision == "fp16" and device.type != "cuda":
            raise DeviceError("precision fp16 needs a CUDA device; use bf16 or fp32 here")
        self.cfg, self.images, self.device = cfg, images, device
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2 ** 32)
        self.G = Generator(cfg.net).to(device)
        self.D = Discriminator(cfg.net).to(device)
        self.frozen_d = freeze_d_blocks(self.D, cfg.freeze_d) if cfg.freeze_d else []
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
        trained_d = [p for p in self.D.parameters() if p.requires_grad]          # all of D unless freeze_d
        self.opt_D = torch.optim.Adam(trained_d, lr=cfg.sched.lr_base, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused)
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
        self.aug_policy, self.aug_p = parse_policy(cfg.aug.policy), cfg.aug.p
        self._overfit = [0.0, 0]                     # adaptive augmentation: sum and count since the last update
        self.cur_nimg = 0
        self.prev_lod: float | None = None
        self.wall_offset = 0.0
        self._label_pool = (torch.from_numpy(images.labels) if images.labels is not None and images.label_size else None)
        self.classes = (ClassPrior.of_labels(images.labels, images.label_size, "clusters" if cfg.clusters else "labels")
                        if self._label_pool is not None else None)

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
            labels = one_hot(self._label_pool[idx], self.images.label_size).to(self.device)
        return z, mix, labels

    def _finish(self, opt, scaler, params) -> None:
        if self.dist.enabled:
            average_gradients(params, self.dist.world)
        scaler.step(opt)
        scaler.update()

    def step(self, ph: Phase | None = None) -> Step:
        """Train one minibatch at the schedule's phase (or at ``ph``, for benchmarks): n_critic D steps,
        each followed by the G_ema update, then one G step."""
        ph = ph or self.phase()
        if self.prev_lod is None or (self.cfg.optim.reset_on_phase and starts_new_phase(self.prev_lod, ph.lod)):
            self.opt_G.state.clear()
            self.opt_D.state.clear()
        self.prev_lod = ph.lod
        for opt, lr in ((self.opt_G, ph.g_lr), (self.opt_D, ph.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        if ph.batch % self.dist.world:
            raise UsageError(f"the minibatch {ph.batch} at {ph.resolution}x{ph.resolution} cannot be split over "
                             f"{self.dist.world} processes; use a batch_table with multiples of {self.dist.world}")
        share = ph.batch // self.dist.world
        rounds = self._rounds(share, ph.resolution)
        micro = [slice(i * share // rounds, (i + 1) * share // rounds) for i in range(rounds)]
        for _ in range(self.cfg.optim.n_critic):
            noise = self._d_noise()
            stats = self._d_step(ph, micro, noise)
            self.cur_nimg += ph.batch
            self._update_ema(ph.batch)
        stats["loss_g"] = self._g_step(ph, micro, noise)
        return Step(ph, stats)

    def _d_noise(self) -> float:
        """LSGAN's D noise strength for the next D step (and the G step after it): appendix B."""
        loss = self.cfg.loss
        return self.lsgan.strength if loss.kind == "lsgan" and loss.lsgan_noise else 0.0

    def _d_step(self, ph: Phase, micro: list[slice], noise: float) -> dict:
        cfg, k, alpha = self.cfg, ph.res_log2, ph.alpha
        amp = autocast_for(self.device, cfg.precision)
        cl = torch.channels_last if cfg.channels_last else torch.contiguous_format
        reals_all, labels_all = minibatch(self.images, self.order, ph.batch, ph.resolution, self.device,
                                          self.dist.rank, self.dist.world)
        z, mix, fake_labels = self._shared_draws(ph.batch, cfg.loss.kind == "wgangp")
        # lazy regularisation: which D steps carry the penalty follows from cur_nimg, so a resumed run agrees
        every = cfg.loss.penalty_every
        penalty_weight = float(every) if (self.cur_nimg // ph.batch) % every == 0 else 0.0
        self.opt_D.zero_grad(set_to_none=True)
        grad_scale = self.scaler_D.get_scale() if self.scaler_D.is_enabled() else 1.0   # one host sync, fp16 only
        stats: dict = {}
        for sl in micro:
            reals = self._augment(fade_images(reals_all[sl], alpha)).contiguous(memory_format=cl)
            labels = labels_all[sl] if labels_all is not None else None
            with torch.no_grad(), amp:
                fakes = self._augment(self.G_run(z[sl], fake_labels[sl] if fake_labels is not None else None, k, alpha))
            with amp:
                loss, s = d_loss(cfg.loss, self.D_run, reals, fakes, labels, k, alpha,
                                 mix=None if mix is None else mix[sl], grad_scale=grad_scale, D_penalty=self.D,
                                 noise=noise, penalty_weight=penalty_weight)
            self.scaler_D.scale(loss / len(micro)).backward()
            for key, v in s.items():
                stats[key] = stats.get(key, 0.0) + v / len(micro)
        self._finish(self.opt_D, self.scaler_D, self._d_params)
        overfit = stats.pop("overfit")
        if cfg.aug.adaptive and self.aug_policy:
            self._adapt(overfit, ph.batch)
        if cfg.loss.kind == "lsgan":
            score = stats["score_fake"]
            self.lsgan.update(float(all_mean(score, self.dist.world) if self.dist.enabled else score))
        return stats

    def _g_step(self, ph: Phase, micro: list[slice], noise: float) -> torch.Tensor:
        amp = autocast_for(self.device, self.cfg.precision)
        z, _, fake_labels = self._shared_draws(ph.batch, False)
        self.opt_G.zero_grad(set_to_none=True)
        total = 0.0
        for sl in micro:
            labels = fake_labels[sl] if fake_labels is not None else None
            with amp:
                fakes = self._augment(self.G_run(z[sl], labels, ph.res_log2, ph.alpha))
                loss, s = g_loss(self.cfg.loss, self.D_run, fakes, labels, ph.res_log2, ph.alpha, noise)
            self.scaler_G.scale(loss / len(micro)).backward(inputs=self._g_params)   # no gradients for D's weights
            total = total + s["loss_g"] / len(micro)
        self._finish(self.opt_G, self.scaler_G, self._g_params)
        return total

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return augment(images, self.aug_policy, self.aug_p)

    ADAPT_EVERY = 4        # D steps between updates of p (ADA's interval)

    def _adapt(self, overfit: torch.Tensor, batch: int) -> None:
        """ADA: move p towards keeping the overfitting heuristic at aug.target."""
        self._overfit[0] += float(overfit)
        self._overfit[1] += 1
        if self._overfit[1] < self.ADAPT_EVERY:
            return
        signal = self._overfit[0] / self._overfit[1]
        if self.dist.enabled:
            signal = float(all_mean(torch.tensor([signal], device=self.device), self.dist.world))
        a = self.cfg.aug
        self.aug_p = adjust_p(self.aug_p, signal, a.target, self._overfit[1] * batch, a.speed_kimg)
        self._overfit = [0.0, 0]

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
            "aug": {"p": self.aug_p, "overfit_sum": self._overfit[0], "overfit_count": self._overfit[1]},
            "wall_time": self.wall_offset,
            **({"classes": self.classes.to_json()} if self.classes is not None else {}),
        }

    def load_init(self, ckpt: dict, path: str) -> None:
        """Fine-tuning: another run's (or a converted) G, D and G_ema weights, nothing else: optimizers,
        counters and the data order start fresh. Levels above the network's own keep their new weights."""
        for name in ("G", "D", "G_ema"):
            module, own = getattr(self, name), getattr(self, name).state_dict()
            state = _without_classes(ckpt[name], own) if not self.cfg.net.label_size else ckpt[name]
            misfit = [k for k in state if k not in own or tuple(own[k].shape) != tuple(state[k].shape)]
            if misfit:
                raise CheckpointError(f"--init '{path}': {name} does not fit this run's network "
                                      f"({', '.join(misfit[:3])})")
            module.load_state_dict(state, strict=False)

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
        if "aug" in ckpt:
            self.aug_p = float(ckpt["aug"]["p"])
            self._overfit = [float(ckpt["aug"]["overfit_sum"]), int(ckpt["aug"]["overfit_count"])]
        self.wall_offset = float(ckpt["wall_time"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(_tuple_state(ckpt["rng"]["python"]))
        _set_numpy_rng_state(ckpt["rng"]["numpy"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels) -> np.ndarray:
        """G_ema's images (uint8 [N, H, W, C]) for fixed latents, at the schedule's current level."""
        ph = self.phase()
        with autocast_for(self.device, self.cfg.precision):
            return to_uint8(self.G_ema(z.to(self.device), None if labels is None else labels.to(self.device),
                                       ph.res_log2, ph.alpha))


def _without_classes(state: dict, own: dict) -> dict:
    """A conditional network's weights for an unconditional one (fine-tuning with conditional=false): G's
    first layer loses its class inputs (as if they were 0) and D's last layer its class logits."""
    state = dict(state)
    for key in ("blocks.2.dense.weight",):                                    # G: [out, z + classes]
        if key in state and key in own and state[key].shape[1] > own[key].shape[1]:
            state[key] = state[key][:, :own[key].shape[1]]
    for key in ("blocks.2.dense1.weight", "blocks.2.dense1.bias"):           # D: [1 + classes, ...]
        if key in state and key in own and state[key].shape[0] > own[key].shape[0]:
            state[key] = state[key][:own[key].shape[0]]
    return state


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


def grid_latents(cfg: TrainConfig, classes: ClassPrior | None):
    """The fixed latents of a run's image grids, and their classes as ``pggan generate`` draws them: the
    user's classes in turn, pggan's clusters from the prior (a grid shows the distribution G learned)."""
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    n = cfg.grid_size ** 2
    z = torch.randn(n, cfg.net.z_dim, generator=g)
    if classes is None:
        return z, None
    drawn = classes.draw(range(cfg.seed + 1_000_003, cfg.seed + 1_000_003 + n)) if classes.implicit else np.arange(n)
    return z, one_hot(torch.from_numpy(drawn % classes.size), classes.size)
