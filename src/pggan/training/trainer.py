"""The Trainer: G, D, G_ema and their optimizers, and one minibatch of training (D steps, then a G step)."""
from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..augment import adjust_p, augment, parse_policy
from ..checkpoint import CheckpointError, checkpoint_config, load_state, schedule_state, schedule_state_from
from ..classes import ClassPrior
from ..config import TrainConfig
from ..data.base import ImageSet
from ..layers import fade_images
from ..losses import LSGANNoise, d_loss, g_loss
from ..networks import Discriminator, Generator, freeze_d_blocks
from ..schedule import Phase, micro_batches, phase_at, starts_new_phase
from ..util.checks import one_hot
from ..util.device import autocast_for, resolve_precision, to_device
from ..util.dist import DistInfo, all_mean, average_gradients, broadcast_module
from ..util.errors import DeviceError, UsageError
from ..util.grids import to_uint8
from .graphs import CudaBackend, StepGraphs, graph_support
from .sampler import DataOrder, minibatch


@dataclass(frozen=True)
class Step:
    """What one call of :meth:`Trainer.step` did: the phase it trained at and its (detached) losses."""
    phase: Phase
    stats: dict


COMPILED_GRAPHS_PER_LEVEL = 8     # G and D, fade or not, with and without gradients, D's one or two minibatches


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
        trained_d = [p for p in self.D.parameters() if p.requires_grad]          # all of D unless freeze_d
        self.opt_G, self.opt_D = adam(self.G.parameters(), cfg, device), adam(trained_d, cfg, device)
        amp16 = cfg.precision == "fp16"
        self.scaler_G = torch.amp.GradScaler(device.type, enabled=amp16)
        self.scaler_D = torch.amp.GradScaler(device.type, enabled=amp16)
        self.compiled(cfg.compile)
        self._g_params = list(self.G.parameters())
        self._d_params = list(self.D.parameters())
        self._ema_pairs = (list(self.G_ema.parameters()), self._g_params,
                           list(self.G_ema.buffers()), list(self.G.buffers()))
        self._ema_live = [False] * len(self._g_params)         # see _update_ema
        self.order = DataOrder(len(images), cfg.seed, cfg.mirror)
        self.lsgan = LSGANNoise(device=device)
        self.aug_policy = parse_policy(cfg.aug.policy)
        self.aug_p = self._aug_p(cfg.aug.p)
        self._overfit = [torch.zeros((), device=device), 0]    # adaptive augmentation: sum and count since the last update
        # what changes from step to step lives on the device, so that a step reads nothing on the host
        self._alpha = torch.ones((), device=device)            # a fade's alpha (only fades use it)
        self.graphs = None                                     # StepGraphs, when use_graphs() turned them on
        # the schedule this run follows: the config's, until a budgeted run moves its end or re-plans
        # (run state, saved with every checkpoint; the config itself never changes)
        self.schedule = copy.deepcopy(cfg.sched)
        self.cur_nimg = 0
        self.prev_lod: float | None = None
        self.wall_offset = 0.0
        self._label_pool = (torch.from_numpy(images.labels) if images.labels is not None and images.label_size else None)
        self.classes = (ClassPrior.of_labels(images.labels, images.label_size, "clusters" if cfg.clusters else "labels")
                        if self._label_pool is not None else None)

    def _aug_p(self, p: float):
        """ADA's p: a device tensor when it adapts (updated without a host read), else the float."""
        return torch.tensor(p, device=self.device) if self.cfg.aug.adaptive and self.aug_policy else p

    def use_graphs(self, log=print, backend=None) -> str | None:
        """Replay training steps as CUDA graphs where they can be captured; returns why not otherwise.
        ``backend``: tests replace the CUDA one."""
        why = None if backend is not None else graph_support(self.cfg, self.device, self.dist.world)
        if why is None:
            self.graphs = StepGraphs(backend or CudaBackend(self.device), log)
        return why

    def compiled(self, on: bool) -> None:
        """Run G and D through torch.compile (or not). The modules and their parameters stay the same;
        the gradient penalties always use the eager D, since compiled graphs have no double backward."""
        if on and not hasattr(self, "_compiled"):
            # each level, fade or not, with gradients or without, is a graph of its own: room for all of them
            # (dynamo's default of 8 per function left every level above 8x8 eager)
            limits = torch._dynamo.config
            limits.recompile_limit = max(limits.recompile_limit, COMPILED_GRAPHS_PER_LEVEL * self.cfg.net.resolution_log2)
            self._compiled = (torch.compile(self.G), torch.compile(self.D))
        self.G_run, self.D_run = self._compiled if on else (self.G, self.D)

    # ---- one minibatch -------------------------------------------------------------------
    def phase(self) -> Phase:
        return phase_at(self.cur_nimg, self.schedule, self.cfg.net.resolution, self.dist.world)

    def set_schedule(self, stabilise_kimg_table: dict | None = None, fade_kimg_table: dict | None = None,
                     total_kimg: float | None = None) -> None:
        """A budgeted run's moving end or re-planned phases (phases already begun must keep their length)."""
        s = self.schedule
        s.stabilise_kimg_table = dict(s.stabilise_kimg_table if stabilise_kimg_table is None else stabilise_kimg_table)
        s.fade_kimg_table = dict(s.fade_kimg_table if fade_kimg_table is None else fade_kimg_table)
        s.total_kimg = float(s.total_kimg if total_kimg is None else total_kimg)

    def _shared_draws(self, n: int, with_mix: bool):
        """Latents, penalty mixing factors and fake labels for the whole global minibatch, drawn on the
        CPU the same way on every rank (so the run does not depend on the number of ranks); only this
        rank's slice is moved to the device."""
        lo, hi = self.dist.rank * n // self.dist.world, (self.dist.rank + 1) * n // self.dist.world
        z = to_device(torch.randn(n, self.G.z_dim)[lo:hi], self.device)
        mix = to_device(torch.rand(n, 1, 1, 1)[lo:hi], self.device) if with_mix else None
        labels = None
        if self._label_pool is not None:
            idx = torch.randint(len(self._label_pool), (n,))[lo:hi]
            labels = to_device(one_hot(self._label_pool[idx], self.images.label_size), self.device)
        return z, mix, labels

    def _finish(self, opt, scaler, params) -> None:
        if self.dist.enabled:
            average_gradients(params, self.dist.world)
        scaler.step(opt)
        scaler.update()

    def step(self, ph: Phase | None = None) -> Step:
        """Train one minibatch at the schedule's phase (or at ``ph``, for benchmarks): n_critic D steps,
        each followed by the G_ema update, then one G step.

        The host prepares everything (phase, learning rates, the minibatch and the random draws, as
        :class:`StepInputs`); :meth:`_train` then runs on the device alone, reading no value back, which
        is what a CUDA graph captures (:mod:`.graphs`)."""
        ph = ph or self.phase()
        if self.prev_lod is None or (self.cfg.optim.reset_on_phase and starts_new_phase(self.prev_lod, ph.lod)):
            reset_adam(self.opt_G)
            reset_adam(self.opt_D)
        self.prev_lod = ph.lod
        set_lr(self.opt_G, ph.g_lr)
        set_lr(self.opt_D, ph.d_lr)
        if ph.fading:
            self._alpha.fill_(ph.alpha)
        if ph.batch % self.dist.world:
            raise UsageError(f"the minibatch {ph.batch} at {ph.resolution}x{ph.resolution} cannot be split over "
                             f"{self.dist.world} processes; use a batch_table with multiples of {self.dist.world}")
        micro = micro_batches(ph.batch // self.dist.world, ph.resolution, self.cfg.sched, self.cfg.net.mbstd_group_size)
        for c in range(self.cfg.optim.n_critic):
            last = c == self.cfg.optim.n_critic - 1
            inputs = self._inputs(ph, with_g=last)
            if self.graphs is not None and self.cfg.optim.n_critic == 1:
                stats = self.graphs.run(self._graph_key(ph, micro, inputs), self._train, ph, micro, inputs)
            else:
                stats = self._train(ph, micro, inputs)
            self.cur_nimg += ph.batch
            overfit = stats.pop("overfit")
            if self.cfg.aug.adaptive and self.aug_policy:
                self._adapt(overfit, ph.batch)
        return Step(ph, stats)

    def _inputs(self, ph: Phase, with_g: bool) -> "StepInputs":
        """The host's part of a step: this rank's real images, the shared draws, the lazy penalty's
        weight and G_ema's weight, all from counters and the CPU's random numbers."""
        cfg = self.cfg
        reals, labels = minibatch(self.images, self.order, ph.batch, ph.resolution, self.device,
                                  self.dist.rank, self.dist.world)
        z, mix, fake_labels = self._shared_draws(ph.batch, cfg.loss.kind == "wgangp")
        g_z, _, g_labels = self._shared_draws(ph.batch, False) if with_g else (None, None, None)
        # lazy regularisation: which D steps carry the penalty follows from cur_nimg, so a resumed run agrees
        every = cfg.loss.penalty_every
        penalty_weight = float(every) if (self.cur_nimg // ph.batch) % every == 0 else 0.0
        return StepInputs(reals, labels, z, mix, fake_labels, g_z, g_labels, penalty_weight,
                          self._ema_weight(self.cur_nimg + ph.batch, ph.batch))

    @staticmethod
    def _graph_key(ph: Phase, micro: tuple, inputs: "StepInputs") -> tuple:
        """What fixes a step's sequence of kernels: the level, fade or not, the micro-batches, the penalty."""
        return ph.res_log2, ph.fading, micro, inputs.penalty_weight

    def _train(self, ph: Phase, micro: tuple, inputs: "StepInputs") -> dict:
        """The device's part of a step: the D step, G_ema, then the G step (if its draws are given)."""
        noise = self._d_noise()
        stats = self._d_step(ph, micro, inputs, noise)
        self._update_ema(inputs.ema_weight)
        if inputs.g_z is not None:
            stats["loss_g"] = self._g_step(ph, micro, inputs, noise)
        return stats

    def _d_noise(self):
        """LSGAN's D noise strength for the next D step (and the G step after it): appendix B; a
        device tensor when on, 0.0 otherwise."""
        loss = self.cfg.loss
        return self.lsgan.strength if loss.kind == "lsgan" and loss.lsgan_noise else 0.0

    def _alpha_of(self, ph: Phase):
        """The networks' alpha: 1.0 outside a fade (no old branch is computed), else a device tensor."""
        return self._alpha if ph.fading else 1.0

    def _d_step(self, ph: Phase, micro: tuple, inputs: "StepInputs", noise) -> dict:
        cfg, k, alpha, i = self.cfg, ph.res_log2, self._alpha_of(ph), inputs
        amp = autocast_for(self.device, cfg.precision)
        cl = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.opt_D.zero_grad(set_to_none=True)
        grad_scale = self.scaler_D.scale(self._alpha.new_ones(())) if self.scaler_D.is_enabled() else 1.0
        stats: dict = {}
        for lo, hi in micro:
            reals = self._augment(fade_images(i.reals[lo:hi], alpha)).contiguous(memory_format=cl)
            labels = i.labels[lo:hi] if i.labels is not None else None
            with torch.no_grad(), amp:
                fakes = self._augment(self.G_run(i.z[lo:hi], _rows(i.fake_labels, lo, hi), k, alpha))
            with amp:
                loss, s = d_loss(cfg.loss, self.D_run, reals, fakes, labels, k, alpha,
                                 mix=_rows(i.mix, lo, hi), grad_scale=grad_scale, D_penalty=self.D,
                                 noise=noise, penalty_weight=i.penalty_weight)
            self.scaler_D.scale(loss / len(micro)).backward()
            for key, v in s.items():
                stats[key] = stats.get(key, 0.0) + v / len(micro)
        self._finish(self.opt_D, self.scaler_D, self._d_params)
        if cfg.loss.kind == "lsgan":
            score = stats["score_fake"]
            self.lsgan.update(all_mean(score.reshape(1), self.dist.world)[0] if self.dist.enabled else score)
        return stats

    def _g_step(self, ph: Phase, micro: tuple, inputs: "StepInputs", noise) -> torch.Tensor:
        amp, alpha = autocast_for(self.device, self.cfg.precision), self._alpha_of(ph)
        self.opt_G.zero_grad(set_to_none=True)
        total = 0.0
        for lo, hi in micro:
            labels = _rows(inputs.g_labels, lo, hi)
            with amp:
                fakes = self._augment(self.G_run(inputs.g_z[lo:hi], labels, ph.res_log2, alpha))
                loss, s = g_loss(self.cfg.loss, self.D_run, fakes, labels, ph.res_log2, alpha, noise)
            self.scaler_G.scale(loss / len(micro)).backward(inputs=self._g_params)   # no gradients for D's weights
            total = total + s["loss_g"] / len(micro)
        self._finish(self.opt_G, self.scaler_G, self._g_params)
        return total

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return augment(images, self.aug_policy, self.aug_p)

    ADAPT_EVERY = 4        # D steps between updates of p (ADA's interval)

    def _adapt(self, overfit: torch.Tensor, batch: int) -> None:
        """ADA: move p towards keeping the overfitting heuristic at aug.target, on the device."""
        self._overfit[0] = self._overfit[0] + overfit
        self._overfit[1] += 1
        if self._overfit[1] < self.ADAPT_EVERY:
            return
        signal = self._overfit[0] / self._overfit[1]
        if self.dist.enabled:
            signal = all_mean(signal.reshape(1), self.dist.world)[0]
        a = self.cfg.aug
        # in place: a CUDA graph reads p where it is
        self.aug_p.copy_(adjust_p(self.aug_p, signal, a.target, self._overfit[1] * batch, a.speed_kimg))
        self._overfit = [torch.zeros((), device=self.device), 0]

    def _ema_weight(self, nimg: int, batch: int):
        """G_ema's lerp weight (1 - beta) after ``nimg`` images: a float in eager steps (a tensor weight is
        read on the host by the CPU's foreach kernel), the graphs' device tensor when they run."""
        beta = self.cfg.optim.ema_beta
        if self.cfg.optim.ema_rampup > 0:
            horizon = max(nimg * self.cfg.optim.ema_rampup / batch, 1.0)   # in steps
            beta = min(beta, 1.0 - 1.0 / horizon)
        return 1.0 - beta

    @torch.no_grad()
    def _update_ema(self, weight) -> None:
        """G_ema moves towards G. A parameter G has never trained (the levels above the current one) is
        still equal to its copy, which lerping would leave as it is: it is skipped, until its first
        gradient, at no change to any value (a run at 4x4 of the 1024 network moves 6.6M of 23M)."""
        ema_all, p_all, ema_b, b = self._ema_pairs
        live = self._ema_live
        for i, p in enumerate(p_all):
            live[i] = live[i] or p.grad is not None      # G's step before this one trained it
        ema_p = [e for e, on in zip(ema_all, live) if on]
        p = [x for x, on in zip(p_all, live) if on]
        if p and isinstance(weight, torch.Tensor):
            delta = torch._foreach_sub(p, ema_p)          # [p - ema] * weight: lerp by a device tensor
            torch._foreach_mul_(delta, weight)
            torch._foreach_add_(ema_p, delta)
        elif p:
            torch._foreach_lerp_(ema_p, p, weight)
        if ema_b:
            torch._foreach_copy_(ema_b, b)

    def _find_ema_live(self) -> None:
        """After loading weights: the parameters whose G_ema copy differs from G's."""
        self._ema_live = [not torch.equal(e, p) for e, p in zip(self._ema_pairs[0], self._g_params)]

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
            "data_order": self.order.state(), "lsgan_d_hat": float(self.lsgan.d_hat), "rng": rng,
            "aug": {"p": float(self.aug_p), "overfit_sum": float(self._overfit[0]), "overfit_count": self._overfit[1]},
            "wall_time": self.wall_offset, "schedule": schedule_state(self.schedule),
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
        self._find_ema_live()

    def load_state_dict(self, ckpt: dict, path: str) -> None:
        if "opt_G" not in ckpt:
            raise CheckpointError(f"'{path}' holds networks without training state (converted or exported); "
                                  f"use it with generate, interpolate or metrics, not --resume")
        for name in ("G", "D", "G_ema"):
            load_state(getattr(self, name), ckpt[name], name, path)
        self._find_ema_live()
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.opt_D.load_state_dict(ckpt["opt_D"])
        if ckpt.get("scaler_G"):
            self.scaler_G.load_state_dict(ckpt["scaler_G"])
            self.scaler_D.load_state_dict(ckpt["scaler_D"])
        self.cur_nimg, self.prev_lod = int(ckpt["cur_nimg"]), ckpt["prev_lod"]
        self.order = DataOrder(len(self.images), self.cfg.seed, self.cfg.mirror, **ckpt["data_order"])
        self.lsgan = LSGANNoise(float(ckpt["lsgan_d_hat"]), self.device)
        if "aug" in ckpt:
            self.aug_p = self._aug_p(float(ckpt["aug"]["p"]))
            self._overfit = [torch.tensor(float(ckpt["aug"]["overfit_sum"]), device=self.device),
                             int(ckpt["aug"]["overfit_count"])]
        self.wall_offset = float(ckpt["wall_time"])
        if "schedule" in ckpt:               # what the run moved, unless this resume sets it anew (--kimg)
            was = checkpoint_config(ckpt).sched
            self.set_schedule(**{k: v for k, v in schedule_state_from(ckpt["schedule"]).items()
                                 if getattr(was, k) == getattr(self.cfg.sched, k)})
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


def adam(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """The paper's Adam, fused, with its learning rate a tensor (set per step without a host value)."""
    o = cfg.optim
    return torch.optim.Adam(params, lr=torch.tensor(cfg.sched.lr_base, device=_lr_device(device)),
                            betas=(o.beta1, o.beta2), eps=o.eps,
                            fused=device.type in ("cpu", "cuda"), capturable=device.type == "cuda")


def _lr_device(device: torch.device) -> torch.device:
    """Where fused Adam reads a tensor learning rate: on the GPU (a CPU tensor there is read on the host,
    once: a CUDA graph would keep the rate it was captured with), on the CPU for a CPU run."""
    return device if device.type == "cuda" else torch.device("cpu")


def set_lr(opt: torch.optim.Adam, lr: float) -> None:
    """Every group's learning rate, in place. A rate that is a float (a checkpoint from before tensor rates)
    or a tensor elsewhere (a resumed checkpoint's, loaded to the CPU) is made a tensor where fused Adam
    reads it, at the first step after loading: before any graph is captured."""
    for group in opt.param_groups:
        where = _lr_device(group["params"][0].device)
        if not isinstance(group["lr"], torch.Tensor) or group["lr"].device != where:
            group["lr"] = torch.tensor(lr, device=where)
        group["lr"].fill_(lr)


def reset_adam(opt: torch.optim.Adam) -> None:
    """Adam as new (the reference resets it at every phase): its moments and step counts zeroed where
    they are, which is the same as a fresh state and keeps every tensor where it was (CUDA graphs)."""
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                v.zero_()


@dataclass
class StepInputs:
    """What one minibatch step reads, prepared on the host: tensors on the device and the two weights."""
    reals: torch.Tensor                      # [N, C, H, W] in [-1, 1], this rank's share
    labels: torch.Tensor | None              # [N, classes] one-hot
    z: torch.Tensor                          # [N, z_dim], the D step's fakes
    mix: torch.Tensor | None                 # [N, 1, 1, 1], WGAN-GP's mixing factors
    fake_labels: torch.Tensor | None
    g_z: torch.Tensor | None                 # the G step's latents (None: a D step of n_critic > 1)
    g_labels: torch.Tensor | None
    penalty_weight: float                    # lazy regularisation (host: it selects kernels)
    ema_weight: float | torch.Tensor         # G_ema's lerp weight

    def tensors(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}


def _rows(x: torch.Tensor | None, lo: int, hi: int) -> torch.Tensor | None:
    return None if x is None else x[lo:hi]


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
