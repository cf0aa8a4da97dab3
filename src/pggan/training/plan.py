"""Plan a run once: :func:`plan_run` turns what was asked into a frozen :class:`RunSpec`, and
:class:`~pggan.training.run.Run` only executes it.

Every decision about a run is made here, in one order: how it starts (new, ``--resume``, ``--init``),
its data and classes (training/labels.py), the precision, the batches for this device (v2 presets,
auto_batch) and, for ``--budget``, the measured plan (training/budget.py). The spec is what
``training_options.json`` holds, what every checkpoint carries and what ``--dry-run`` prints; the same
request on the same machine gives the same spec. ``pggan bench``, the tools and the ``--nproc`` parent
build their runs through here too.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field

import torch

from ..checkpoint import checkpoint_config, load_checkpoint
from ..config import ConfigError, TrainConfig
from ..data.base import ImageSet
from ..data.load import check_data, load_images
from ..schedule import check_batches, use_v2_batches
from ..util.device import resolve_precision
from ..util.dist import DistInfo
from . import labels as run_labels
from .batchfind import find_batch_caps, pick_v2_presets, probe, release
from .budget import BudgetPlan, budget_family, clusters_for_budget, plan_budget

STARTS = ("new", "resume", "init")


@dataclass(frozen=True)
class RunRequest:
    """What the command asked: the validated options, which of them the user set (flags, --set, the
    config file: the budget sizes the network only where no width option is among them), the checkpoint
    a resumed run continues, and when the budget began (a time.time(); default: when planning starts)."""
    config: TrainConfig
    given: frozenset = frozenset()
    resume: str | None = None
    started: float | None = None


@dataclass(frozen=True)
class RunSpec:
    request: TrainConfig                 # the options as asked
    config: TrainConfig                  # as planned: what the run trains with (never changed after)
    start: str = "new"                   # one of STARTS
    checkpoint: str = ""                 # what a resumed or fine-tuned run starts from
    labels: run_labels.Labels = field(default_factory=run_labels.Labels)
    precision_why: str = "as asked"
    budget: BudgetPlan | None = None
    notes: tuple = ()                    # the planner's lines for the log

    @property
    def precision(self) -> str:
        return self.config.precision

    @property
    def batches(self) -> dict:
        s = self.config.sched
        return {"table": s.batch_table, "base": s.batch_base, "device_caps": s.device_batch_cap,
                "accumulate": s.accumulate, "v2": s.gpu_batches == "v2"}

    def to_dict(self) -> dict:
        return {"start": self.start, "checkpoint": self.checkpoint, "precision": self.precision,
                "precision_why": self.precision_why, "batches": self.batches, "labels": self.labels.to_dict(),
                "budget": self.budget.to_dict() if self.budget else None, "notes": list(self.notes),
                "config": self.config.to_dict(), "request": self.request.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        d = json.loads(text)
        return cls(TrainConfig.from_dict(d["request"]), TrainConfig.from_dict(d["config"]), d["start"],
                   d["checkpoint"], run_labels.Labels.from_dict(d["labels"]), d["precision_why"],
                   BudgetPlan.from_dict(d["budget"]) if d["budget"] else None, tuple(d["notes"]))


def plan_run(req: RunRequest, device: torch.device, info: DistInfo = DistInfo(),
             measure: bool = True) -> tuple[RunSpec, ImageSet]:
    """(the spec, the images labelled by it). ``measure``: time this machine for a --budget plan (off for
    benchmarks, which time the run's steps themselves, and still get the budget's classes)."""
    cfg, notes = copy.deepcopy(req.config), []
    started = req.started or time.time()
    check_batches(cfg.sched, cfg.net, info.world)                   # before the data is read
    start, path = ("resume", req.resume) if req.resume else ("init", cfg.init) if cfg.init else ("new", "")
    source, saved_budget = _saved(path, start) if path else (None, None)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed, info.local_world)
    conditional = True if cfg.conditional else (False if "conditional" in req.given else None)
    if start == "resume" and source is not None:
        _check_resumed_labels(cfg, source)
    decision = run_labels.decide(data_labels=images.label_size, conditional=conditional, clusters=cfg.clusters,
                                 source=source, resume=start == "resume",
                                 budget_clusters=clusters_for_budget(cfg, len(images), req.given) if start == "new" else 0)
    labels, images = run_labels.apply(decision, images, cfg.seed)
    if labels.why:
        notes.append(labels.why)
    cfg.net.label_size = labels.count
    cfg.clusters = labels.count if labels.kind == "clusters" else 0
    cfg.precision, why = resolve_precision(cfg.precision, device)
    if why != "as asked":
        notes.append(f"precision {cfg.precision} ({why})")
    notes += device_batches(cfg, images, device, info, fresh=start != "resume")
    check_batches(cfg.sched, cfg.net, info.world)                   # and the batches chosen for this device
    budget = saved_budget if start == "resume" else None
    if cfg.budget and start != "resume" and measure:
        cfg, budget = plan_budget(cfg, images, device, info, started, cfg.budget_network == "auto" and
                                  budget_family(cfg, req.given), labels.count if labels.kind == "clusters" else 0,
                                  log=notes.append)
    return RunSpec(req.config, cfg, start, path, labels, why, budget, tuple(notes)), images


def check_request(req: RunRequest, processes: int) -> None:
    """What the planner refuses before any data is decoded, for ``processes`` training processes on this
    machine: the batches against the minibatch stddev's groups, data that is missing, has no images or would
    not fit in memory. The --nproc parent asks this once, rather than every process after it starts."""
    cfg = req.config
    check_batches(cfg.sched, cfg.net, processes)
    check_data(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed, copies=processes)


def run_data(cfg: TrainConfig, device: torch.device = torch.device("cpu")) -> tuple[TrainConfig, ImageSet]:
    """The config and images a run of ``cfg`` trains with on ``device``, planned but not measured: what
    benchmarks and checks build their Trainer from, so that they time and test what a run trains."""
    spec, images = plan_run(RunRequest(cfg), device, measure=False)
    return spec.config, images


def _saved(path: str, start: str) -> tuple[run_labels.Source, BudgetPlan | None]:
    """The classes of the network a resumed or fine-tuned run starts from and the budget plan it was
    trained to, from its checkpoint (mapped: its tensors are not read)."""
    ckpt = load_checkpoint(path, lazy=True)
    if "spec" in ckpt:
        spec = RunSpec.from_json(ckpt["spec"])
        return spec.labels.source(), spec.budget
    cfg = checkpoint_config(ckpt)                         # a checkpoint of a run made before plans were saved
    k = cfg.net.label_size
    prior = tuple(json.loads(ckpt["classes"])["freqs"]) if k and "classes" in ckpt and start == "resume" else ()
    return run_labels.Source(k, "clusters" if cfg.clusters else "data", (), prior), None


def _check_resumed_labels(cfg: TrainConfig, source: run_labels.Source) -> None:
    """A resumed run keeps the classes it was trained with."""
    kind = "none" if not source.classes else source.kind
    asked = "clusters" if cfg.clusters else "data" if cfg.conditional else "none"
    if asked != kind or (cfg.clusters and cfg.clusters != source.classes):
        raise ConfigError(f"--resume: the run was trained with {_describe(kind, source.classes)}; a run cannot change "
                          f"its classes when resuming (drop the conditional or clusters option)")


def _describe(kind: str, k: int) -> str:
    return {"none": "no classes", "data": f"the data's {k} classes", "clusters": f"{k} clusters"}[kind]


def device_batches(cfg: TrainConfig, images: ImageSet, device: torch.device, info: DistInfo = DistInfo(),
                   fresh: bool = True) -> list[str]:
    """On CUDA: the v2 minibatches of a fresh one-GPU paper run and auto_batch's per-device caps, into
    ``cfg``; a resumed run keeps its batches. Returns notes for the log."""
    notes: list[str] = []
    fits = probe(cfg, images, device) if cfg.sched.auto_batch and device.type == "cuda" else None
    if cfg.sched.gpu_batches and device.type == "cuda" and info.world == 1 and fresh:
        presets = pick_v2_presets(cfg, fits, notes.append) if fits is not None else {}
        use_v2_batches(cfg.sched, cfg.net.resolution, presets)
        notes.append(f"gpu_batches v2: on one GPU the authors' v2 minibatches {cfg.sched.batch_table} (4 above) and "
                     f"learning rates {cfg.sched.g_lr_table}; --set sched.gpu_batches= for batch_table")
    if cfg.sched.auto_batch and device.type != "cuda":
        notes.append(f"auto_batch: applies to CUDA devices; on {device.type} the configured batches are used")
    elif cfg.sched.auto_batch:
        caps = find_batch_caps(cfg, images, device, info, fits, log=notes.append)
        for res, cap in caps.items():
            cfg.sched.device_batch_cap[res] = min(cap, cfg.sched.device_batch_cap.get(res, cap))
        if caps:
            cfg.sched.accumulate = True
        notes.append(f"auto_batch: per-device caps {cfg.sched.device_batch_cap or 'none needed'}")
    if fits is not None:
        fits = None             # the probe's Trainer goes with it
        release()
    return notes
