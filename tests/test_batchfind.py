"""auto_batch: the largest per-device batch that fits, found by probing (memory faked on CPU)."""
import torch
from test_training import tiny_config

from pggan.data.load import load_images
from pggan.training.batchfind import find_batch_caps, largest_fitting, step_fits
from pggan.training.trainer import Trainer
from pggan.util.dist import DistInfo


def test_largest_fitting_doubles_up_to_the_limit():
    assert largest_fitting(lambda n: n <= 24, limit=64) == 16
    assert largest_fitting(lambda n: n <= 24, limit=8) == 8
    assert largest_fitting(lambda n: False, limit=64) == 0
    calls = []
    largest_fitting(lambda n: calls.append(n) or n <= 100, limit=32)
    assert calls == [4, 8, 16, 32]


def test_find_batch_caps_caps_only_what_does_not_fit(tmp_path):
    cfg = tiny_config(tmp_path)                        # 4 -> 16, batch 8 everywhere
    cfg.sched.batch_table = {4: 64, 8: 32, 16: 16}
    memory = {4: 1000, 8: 20, 16: 5}                   # images that "fit" per resolution
    seen = []

    def fits(res, n):
        seen.append((res, n))
        return n <= memory[res]

    caps = find_batch_caps(cfg, None, torch.device("cpu"), DistInfo(), fits=fits, log=lambda m: None)
    assert caps == {8: 16, 16: 4}
    assert (4, 64) in seen and (8, 32) in seen and (16, 16) in seen


def test_step_fits_runs_a_real_step_and_reports_out_of_memory(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    trainer = Trainer(cfg, images, torch.device("cpu"))
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    assert step_fits(trainer, 16, 8)
    assert all(p.grad is None for p in trainer.G.parameters())
    assert all(torch.equal(before[k], v) for k, v in trainer.G.state_dict().items())   # lr 0: weights untouched

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(trainer, "_d_step", oom)
    assert not step_fits(trainer, 16, 8)


def test_auto_batch_is_a_note_on_cpu(tmp_path):
    from pggan.training.run import run_training as train

    cfg = tiny_config(tmp_path)
    cfg.sched.auto_batch, cfg.sched.total_kimg = True, 0.02
    log = []
    train(cfg, progress=False, echo=log.append)
    assert any("auto_batch: applies to CUDA devices" in line for line in log)
