"""auto_batch: the largest per-device batch that fits, found by probing (memory faked on CPU)."""
import copy

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


def _memory(budget):
    """A fake GPU: a step fits while images x pixels stay within ``budget``."""
    seen = []

    def fits(res, n):
        seen.append((res, n))
        return n * res * res <= budget
    return fits, seen


def test_pick_v2_presets_takes_the_largest_authors_minibatch_that_fits():
    from pggan.presets import get_preset
    from pggan.training.batchfind import pick_v2_presets

    fits, seen = _memory(32 * 256 * 256)
    log = []
    chosen = pick_v2_presets(get_preset("celebahq-1024"), fits, log.append)
    # 4x4: 512 is both the 4- and the 8-GPU preset's (the one for fewer GPUs); 16-64: no preset has more than
    # the 1-GPU one; 512x512: 8 fits, 16 does not; 1024x1024: not even 8 fits
    assert chosen == {4: 4, 8: 2, 128: 8, 256: 8, 512: 2}
    assert (512, 32) not in seen and (1024, 16) not in seen            # no probe past the first that failed
    assert any("512x512: minibatch 8 fits one GPU; the authors' preset-v2-2gpus" in m for m in log)


def test_use_v2_batches_with_raised_presets_takes_their_batches_and_rates():
    from pggan.config import ScheduleConfig
    from pggan.schedule import batch_for, use_v2_batches

    sched = ScheduleConfig(g_lr_table={256: 0.0042})                   # the user's own rate stays
    use_v2_batches(sched, 1024, {4: 4, 8: 2, 128: 8, 256: 8, 512: 2})
    assert [batch_for(r, sched) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [512, 256, 128, 64, 32, 32,
                                                                                        32, 8, 4]
    assert sched.g_lr_table == {128: 0.0015, 256: 0.0042, 512: 0.0015, 1024: 0.0015}
    assert sched.d_lr_table == {128: 0.0015, 256: 0.002, 512: 0.0015, 1024: 0.0015}
    v2 = ScheduleConfig(g_lr_table={1024: 0.0015}, d_lr_table={1024: 0.0015})      # celebahq-1024-v2's own rate
    use_v2_batches(v2, 1024, {1024: 8})
    assert batch_for(1024, v2) == 32 and v2.g_lr_table == v2.d_lr_table == {1024: 0.003}


def test_auto_batch_raises_a_fresh_v2_run_on_one_gpu(monkeypatch):
    from types import SimpleNamespace

    from pggan.presets import get_preset
    from pggan.schedule import V2_BATCH, batch_for
    from pggan.training import plan

    fits, seen = _memory(4 * 1024 * 1024)
    monkeypatch.setattr(plan, "probe", lambda cfg, images, device: fits)

    def resolve_config(cfg, images, device, fresh=True):
        out = copy.deepcopy(cfg)
        return out, plan.device_batches(out, images, device, fresh=fresh)

    cfg = get_preset("celebahq-1024")
    cfg.sched.auto_batch = True
    images, cuda = SimpleNamespace(label_size=0), torch.device("cuda")      # resolving touches no GPU
    raised, notes = resolve_config(cfg, images, cuda)
    assert raised.sched.batch_table[4] == 512 and raised.sched.batch_table[512] == 16     # 16 x 512^2 = the budget
    assert raised.sched.g_lr_table[256] == 0.002
    assert batch_for(1024, raised.sched) == 4 and (1024, 8) in seen           # 8 does not fit: preset-v2-1gpu's
    assert raised.sched.device_batch_cap == {} and not raised.sched.accumulate  # what was chosen fits whole
    assert any(n.startswith("auto_batch: 4x4: minibatch 512") for n in notes)
    resumed, _ = resolve_config(cfg, images, cuda, fresh=False)           # a resumed run keeps its batches
    assert resumed.sched.batch_table != V2_BATCH and resumed.sched.batch_table == cfg.sched.batch_table
