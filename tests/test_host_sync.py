"""A training step reads no tensor value on the host (#35): on a GPU every such read waits for the queue
of kernels to drain, so the host can no longer run ahead. On the CPU the reads are counted where they
happen, at the dispatcher (``.item()``, ``float(t)``, ``bool(t)``, a Python branch on a tensor) and in
the Tensor methods that copy values out (``tolist``, ``numpy``)."""
import collections
import time
import traceback

import pytest
import torch
from test_training import tiny_config
from torch.utils._python_dispatch import TorchDispatchMode

from pggan.config import validate
from pggan.data.load import load_images
from pggan.training.plan import RunRequest, plan_run
from pggan.training.run import Run, StopRequest
from pggan.training.trainer import Trainer
from pggan.util.dist import DistInfo

READS = {"_local_scalar_dense", "is_nonzero", "equal", "item"}


class HostReads(TorchDispatchMode):
    """Counts the calls that hand a tensor's value to Python, with where each came from."""

    def __init__(self):
        super().__init__()
        self.where = collections.Counter()

    def _record(self, name: str) -> None:
        frame = next((f for f in reversed(traceback.extract_stack()[:-2]) if "/pggan/" in f.filename), None)
        self.where[f"{name} at {frame.filename.split('/pggan/')[-1]}:{frame.lineno}" if frame else name] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in READS:
            self._record(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        self._saved = {m: getattr(torch.Tensor, m) for m in ("tolist", "numpy")}
        for name, method in self._saved.items():
            def counted(t, *a, _name=name, _method=method, **k):
                self._record(_name)
                return _method(t, *a, **k)
            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)
        return super().__exit__(*exc)


def _trainer(tmp_path, **changes):
    cfg = tiny_config(tmp_path)
    for path, value in changes.items():
        obj, *rest = path.split(".")
        target = getattr(cfg, obj) if rest else cfg
        setattr(target, rest[0] if rest else obj, value)
    cfg = validate(cfg)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    return Trainer(cfg, images, torch.device("cpu"))


def test_the_counter_sees_every_kind_of_host_read():
    x = torch.ones(3)
    with HostReads() as reads:
        x.sum().item(), float(x[0]), bool(x[0] > 0), x.tolist(), x.numpy()
        if x.max() > 0:
            pass
    assert sum(reads.where.values()) == 6, reads.where


@pytest.mark.parametrize("changes", [
    {},                                                                      # WGAN-GP, the paper
    {"loss.kind": "lsgan"},                                                  # D noise adapted every step
    {"loss.kind": "logistic", "aug.policy": "translation,cutout,color", "aug.adaptive": True},   # R1 + ADA
    {"conditional": True, "loss.penalty_every": 4},                          # labels, lazy penalty
    {"sched.device_batch_cap": {4: 2, 8: 2, 16: 2}, "sched.accumulate": True},   # micro-batches
], ids=["wgangp", "lsgan", "logistic-ada", "conditional-lazy", "micro-batches"])
@pytest.mark.parametrize("kimg", [0.1, 0.5, 10.0], ids=["4x4", "fade-8x8", "16x16"])
def test_a_training_step_reads_nothing_on_the_host(tmp_path, changes, kimg):
    t = _trainer(tmp_path, **changes)
    t.cur_nimg = int(kimg * 1000)
    t.step()                                          # the first step of a phase (Adam's reset) included
    with HostReads() as reads:
        for _ in range(5):                            # ADA adapts every 4 D steps
            t.step()
    assert not reads.where, dict(reads.where)


def test_the_training_loop_reads_nothing_between_ticks(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.tick_kimg = cfg.image_kimg = cfg.checkpoint_kimg = 100.0
    cfg.sched.total_kimg = 200.0
    spec, images = plan_run(RunRequest(cfg), torch.device("cpu"))
    run = Run(spec, images, torch.device("cpu"), DistInfo(), False, lambda m: None, time.time())
    stop = StopRequest()
    run.iteration(stop, None, 0.0)
    with HostReads() as reads:
        for _ in range(6):
            run.iteration(stop, None, 0.0)
    assert not reads.where, dict(reads.where)
    run._tick()                                       # once a tick: the losses are read, as one transfer
    assert run.steps == 0
    run.run_dir.close()


def test_device_alpha_and_learning_rates_train_as_python_floats(tmp_path, monkeypatch):
    from pggan.training import trainer as T

    def run():
        t = _trainer(tmp_path)
        t.cur_nimg = 150                               # 4x4, then the fade into 8x8
        return [t.step() for _ in range(10)]

    on_device = run()
    assert isinstance(T.Trainer._alpha_of(_trainer(tmp_path), on_device[-1].phase), torch.Tensor)

    def float_lr(opt, lr):
        for group in opt.param_groups:
            group["lr"] = lr
    monkeypatch.setattr(T.Trainer, "_alpha_of", lambda self, ph: ph.alpha)
    monkeypatch.setattr(T, "set_lr", float_lr)
    as_floats = run()
    assert any(s.phase.fading for s in as_floats)
    for a, b in zip(on_device, as_floats):
        for key in a.stats:
            torch.testing.assert_close(a.stats[key], b.stats[key], rtol=1e-6, atol=1e-7)
