import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pggan.api import load_generator, parse_seeds
from pggan.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, network_file
from pggan.cli import main
from pggan.config import TrainConfig, validate
from pggan.presets import get_preset
from pggan.training.run import run_training as train


def tiny_config(tmp_path, **kw) -> TrainConfig:
    cfg = get_preset("cpu-small")
    cfg.precision = "fp32"                      # the exactness tests compare fp32 runs
    cfg.outdir = str(tmp_path / "runs")
    cfg.data_count = 64
    cfg.net.resolution = 16
    cfg.net.fmap_base, cfg.net.fmap_max, cfg.net.latent_size = 64, 16, 16
    cfg.sched.lod_training_kimg = cfg.sched.lod_transition_kimg = 0.2
    cfg.sched.total_kimg = 1.0
    cfg.sched.batch_base, cfg.sched.batch_table = 8, {}
    cfg.tick_kimg, cfg.image_kimg, cfg.checkpoint_kimg = 0.2, 0.5, 0.4
    cfg.grid_size = 4
    for k, v in kw.items():
        setattr(cfg, k, v)
    return validate(cfg)


def test_end_to_end_run_directory(tmp_path):
    cfg = tiny_config(tmp_path)
    result = train(cfg, progress=False, echo=lambda m: None)
    run = result.run_dir
    assert os.path.basename(run) == "00000-shapes-16-cpu-small"
    files = set(os.listdir(run))
    assert {"training_options.json", "requested_options.json", "log.txt", "stats.jsonl", "reals.png",
            "generator-final.safetensors"} <= files
    assert json.load(open(os.path.join(run, "training_options.json")))["config"]["net"]["resolution"] == 16
    stats = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    assert len(stats) == 5
    keys = {"kimg", "resolution", "lod", "alpha", "batch", "loss_d", "loss_g", "img_per_s", "sec_per_kimg", "mem_mb", "wall_s"}
    assert all(keys <= set(s) for s in stats)
    # 4x4 (0-0.2), fade to 8 (0.2-0.4), 8 (0.4-0.6), fade to 16 (0.6-0.8), 16: the run went through every phase
    assert [s["resolution"] for s in stats] == [4, 8, 8, 16, 16]
    assert [s["alpha"] < 1 for s in stats] == [False, True, False, True, False]
    assert all(np.isfinite(s["loss_d"]) and np.isfinite(s["loss_g"]) for s in stats)
    grids = sorted(f for f in files if f.startswith("fakes"))
    assert grids == ["fakes000000.504.png", "fakes000001.000.png"]      # named by the exact images shown
    for g in grids:
        assert Image.open(os.path.join(run, g)).size == (64, 64)     # 4x4 grid of 16 px, every grid the same size
    # at 0.4 and 0.8 kimg (they shared a name when names had whole kimg), and the final one
    assert [os.path.basename(p) for p in list_checkpoints(run)] == [
        "checkpoint-000000.400.pt", "checkpoint-000000.800.pt", "checkpoint-000001.000.pt"]
    ckpt = load_checkpoint(list_checkpoints(run)[-1])
    assert ckpt["cur_nimg"] >= 1000 and {"G", "D", "G_ema", "opt_G", "opt_D", "rng", "data_order"} <= set(ckpt)
    # a second run never reuses the directory
    assert os.path.basename(train(cfg, progress=False, echo=lambda m: None).run_dir).startswith("00001-")


def _losses_until(cfg, stop_at=None, resume=None):
    losses = []

    def cb(trainer, s):
        losses.append((trainer.cur_nimg, float(s.stats["loss_d"]), float(s.stats["loss_g"])))
        return stop_at is not None and len(losses) >= stop_at

    result = train(cfg, resume=resume, progress=False, step_callback=cb, echo=lambda m: None)
    return losses, result


@pytest.mark.parametrize("loss", ["wgangp", "lsgan", "wgangp-lazy"])
def test_interrupted_and_resumed_run_repeats_exactly(tmp_path, loss):
    cfg = tiny_config(tmp_path, deterministic=True, mirror=True)
    cfg.loss.kind = loss.removesuffix("-lazy")
    cfg.loss.penalty_every = 3 if loss.endswith("-lazy") else 1
    cfg.sched.total_kimg = 0.7
    full, _ = _losses_until(cfg)
    # stop mid-fade (0.2..0.4 kimg is the fade into 8x8): step 30 is at 0.24 kimg
    first, res = _losses_until(cfg, stop_at=30)
    assert res.interrupted and 0.2 < first[-1][0] / 1000 < 0.4
    ckpt = list_checkpoints(res.run_dir)[-1]
    second, res2 = _losses_until(cfg, resume=ckpt)
    assert not res2.interrupted and res2.run_dir == res.run_dir
    assert first + second == full
    stats = [json.loads(line) for line in open(os.path.join(res.run_dir, "stats.jsonl"))]
    assert [s["tick"] for s in stats] == list(range(1, len(stats) + 1))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_save_checkpoint_and_exit_cleanly(tmp_path, sig, code):
    cfgfile = tmp_path / "cfg.json"
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 1000
    cfgfile.write_text(cfg.to_json())
    proc = subprocess.Popen([sys.executable, "-m", "pggan", "train", "--config", str(cfgfile), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "runs" / "00000-shapes-16-cpu-small"
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "stats.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, out
    assert "Traceback" not in out and "--resume" in out
    ckpts = list_checkpoints(str(run))
    assert ckpts and load_checkpoint(ckpts[-1])["cur_nimg"] > 0


def test_resume_latest_from_cli(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.4
    train(cfg, progress=False, echo=lambda m: None)
    reads, real_load = [], torch.load

    def spy(f, *a, **kw):
        reads.append((os.path.basename(str(f)), kw.get("mmap", False)))
        return real_load(f, *a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    r = CliRunner().invoke(main, ["train", "--resume", "latest", "--outdir", cfg.outdir, "--kimg", "0.6", "--no-progress"])
    assert r.exit_code == 0, r.output
    # the checkpoint's config (launch) and plan (the planner) are read mapped, its tensors untouched; the
    # training state once, in full
    assert reads == [("checkpoint-000000.400.pt", True)] * 2 + [("checkpoint-000000.400.pt", False)]
    ckpts = list_checkpoints(os.path.join(cfg.outdir, "00000-shapes-16-cpu-small"))
    assert load_checkpoint(ckpts[-1])["cur_nimg"] >= 600


def test_lazy_checkpoint_read_holds_the_same_and_refuses_the_same(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.2
    path = list_checkpoints(train(cfg, progress=False, echo=lambda m: None).run_dir)[-1]
    full, lazy = load_checkpoint(path), load_checkpoint(path, lazy=True)
    assert lazy["config"] == full["config"] and lazy["cur_nimg"] == full["cur_nimg"]
    assert all(torch.equal(lazy["G"][k], v) for k, v in full["G"].items())
    cut = tmp_path / "cut.pt"
    cut.write_bytes(open(path, "rb").read()[:-1000])
    for lazily in (False, True):
        with pytest.raises(CheckpointError, match="not a readable pggan checkpoint"):
            load_checkpoint(str(cut), lazy=lazily)


def test_generate_and_load_generator(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.45                       # ends at 8x8 of 16x16: generators give 8x8 images
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = list_checkpoints(run)[-1]
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["generate", "--network", ckpt, "--seeds", "0-2,7", "--outdir", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    first = np.asarray(Image.open(out / "seed0001.png"))
    CliRunner().invoke(main, ["generate", "--network", ckpt, "--seeds", "1", "--outdir", str(out)])
    assert np.array_equal(first, np.asarray(Image.open(out / "seed0001.png")))
    r = CliRunner().invoke(main, ["generate", "--network", ckpt, "--seeds", "0-3", "--grid", "--outdir", str(out)])
    assert r.exit_code == 0 and Image.open(out / "grid-seeds0-3.png").size == (16, 16)
    assert "trained at 8x8 (of 16x16)" in r.output
    # the exported generator gives the same images as the checkpoint's G_ema, at the level reached
    a = load_generator(ckpt).generate(seeds=[3, 4])
    b = load_generator(os.path.join(run, "generator-final.safetensors")).generate(seeds=[3, 4])
    assert a.images.shape == (2, 8, 8, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images)
    t = load_generator(ckpt).generate(seeds=[3], truncate=0.5).tensor
    assert t.shape == (1, 3, 8, 8)
    # a run directory stands for its final generator, or with --raw (G) for its newest checkpoint
    r = CliRunner().invoke(main, ["generate", "--network", run, "--seeds", "3-4", "--outdir", str(tmp_path / "d")])
    assert r.exit_code == 0 and "generator-final.safetensors" in r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d" / "seed0003.png")), a.images[0])
    assert network_file(run, need_checkpoint=True) == ckpt and load_generator(run, use_ema=False).source == ckpt
    results = os.path.join(run, "metric-swd.jsonl")                   # beside the file read
    before = open(results).read().count("\n") if os.path.isfile(results) else 0
    r = CliRunner().invoke(main, ["metrics", "--network", run, "--data", "builtin:shapes", "--metrics", "swd", "--num", "64"])
    assert r.exit_code == 0 and open(results).read().count("\n") == before + 1, r.output
    os.unlink(os.path.join(run, "generator-final.safetensors"))       # an unfinished run: its newest checkpoint
    assert load_generator(run).source == ckpt
    for f in list_checkpoints(run):
        os.unlink(f)
    r = CliRunner().invoke(main, ["generate", "--network", run, "--outdir", str(tmp_path / "e")])
    assert r.exit_code == 1 and "no generator-final.safetensors and no checkpoint-*.pt" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "e").exists()


def test_seed_syntax():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds("5") == [5]
    assert parse_seeds(" 1 - 2 , 4") == [1, 2, 4]
    for bad in ("a", "3-1", "1,,2", "-1"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def _cli(*args):
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_clear_errors(tmp_path):
    code, out = _cli("train", "--data", str(tmp_path / "nope"), "--dry-run")
    code, out = _cli("train", "--data", str(tmp_path / "nope"), "--outdir", str(tmp_path / "r"), "--no-progress")
    assert code == 1 and "does not exist" in out and "Traceback" not in out
    code, out = _cli("train", "--preset", "celeba-9000")
    assert code == 1 and "unknown preset 'celeba-9000'" in out
    code, out = _cli("train", "--set", "sched.total_kimg=abc", "--dry-run")
    assert code == 1 and "sched.total_kimg" in out
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, out = _cli("generate", "--network", str(bad))
    assert code == 1 and "not a readable pggan checkpoint" in out
    code, out = _cli("train", "--resume", str(bad))
    assert code == 1 and "not a readable pggan checkpoint" in out
    code, out = _cli("generate", "--network", str(tmp_path / "missing.pt"))
    assert code == 1 and "does not exist" in out
    code, out = _cli("generate", "--network", str(bad), "--seeds", "x")
    assert code == 1 and "cannot read seeds" in out
    code, out = _cli("train", "--resume", "latest", "--outdir", str(tmp_path / "empty"))
    assert code == 1 and "no checkpoint found" in out


def test_a_batch_the_minibatch_stddev_cannot_group_stops_before_the_run_starts(tmp_path):
    code, out = _cli("train", "--preset", "demo", "--outdir", str(tmp_path / "runs"), "--no-progress",
                     "--set", 'sched.batch_table={"8": 6}')
    assert code == 1 and "minibatch 6 at 8x8 does not split into the minibatch stddev's groups of 4" in out, out
    assert "Traceback" not in out and not os.path.exists(tmp_path / "runs")


def test_checkpoint_from_a_different_network(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.1
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = list_checkpoints(run)[-1]
    code, out = _cli("train", "--resume", ckpt, "--resolution", "32")
    assert code == 1 and "network options differ" in out
    # a checkpoint whose tensors do not fit the network its config describes
    data = torch.load(ckpt, weights_only=True)
    data["config"] = json.dumps(dict(json.loads(data["config"]), net=dict(json.loads(data["config"])["net"], fmap_max=8)))
    other = tmp_path / "other.pt"
    torch.save(data, other)
    code, out = _cli("generate", "--network", str(other))
    assert code == 1 and "does not fit this network" in out and "Traceback" not in out
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(str(other))


def test_truncated_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.1
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = list_checkpoints(run)[-1]
    data = open(ckpt, "rb").read()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    code, out = _cli("generate", "--network", str(cut))
    assert code == 1 and "not a readable pggan checkpoint" in out


def test_folder_data(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(folder / "sub" / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    cfg = tiny_config(tmp_path, data=str(folder))
    cfg.sched.total_kimg = 0.05
    result = train(cfg, progress=False, echo=lambda m: None)
    log = open(os.path.join(result.run_dir, "log.txt")).read()
    assert "8 images, 1 skipped" in log
    assert os.path.basename(result.run_dir) == "00000-imgs-16-cpu-small"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _cli("train", "--data", str(empty), "--outdir", str(tmp_path / "r"), "--no-progress")
    assert code == 1 and "no images" in out


def test_a_folder_is_decoded_a_window_at_a_time_and_refused_when_it_would_not_fit(tmp_path, monkeypatch):
    from pggan.data import load

    folder = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        for i in range(7):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / sub / f"{i}.png")
    (folder / "a" / "bad.png").write_bytes(b"not a png")
    whole = load.load_images(str(folder), 16, 3, 100)
    monkeypatch.setattr(load, "DECODE_WINDOW", 4)                     # windows of 4 files, one of them bad
    windowed = load.load_images(str(folder), 16, 3, 100)
    assert len(windowed) == 14 and "14 images, 1 skipped" in windowed.description
    assert all(np.array_equal(windowed.levels[r], whole.levels[r]) for r in whole.levels)
    assert windowed.labels is None and whole.labels is None         # a folder trains unconditionally
    free = 3 * 15 * 3 * 16 * 16                       # a half of it holds one copy of the 15 files' levels
    monkeypatch.setattr(load, "available_memory", lambda: free)
    load.check_data(str(folder), 16, 3, 100)
    with pytest.raises(load.DataError, match=r"decodes its 15 images into memory in each of 2 processes: "
                                             r".*\(pggan dataset create"):
        load.check_data(str(folder), 16, 3, 100, copies=2)
    monkeypatch.setattr(load, "available_memory", lambda: free // 2)
    with pytest.raises(load.DataError, match=r"decodes its 15 images into memory: "):
        load.load_images(str(folder), 16, 3, 100)


def test_conditional_training_on_labelled_dataset(tmp_path):
    from pggan.data.create import ConvertOptions, create_dataset
    from pggan.data.sources import open_source

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    create_dataset(open_source(str(root), labels="folders"), str(tmp_path / "ds"),
                   ConvertOptions(resolution=16, workers=1), progress=False)
    cfg = tiny_config(tmp_path, data=str(tmp_path / "ds"), conditional=True)
    cfg.sched.total_kimg = 0.1
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = list_checkpoints(run)[-1]
    G = load_generator(ckpt)
    assert G.net.label_size == 3
    assert G.generate(seeds=[1, 2], labels=[0, 2]).images.shape == (2, 4, 4, 3)     # 0.1 kimg: still at 4x4
    # the data's labels, in the data's shares (4 images each): the prior saved with the network
    assert G.classes.freqs == (1 / 3, 1 / 3, 1 / 3) and not G.classes.implicit
    # without --class, seed s draws its class from the prior: the same images as asking for those classes
    drawn = G.classes.draw([4, 5, 6])
    assert np.array_equal(G.generate(seeds=[4, 5, 6]).images, G.generate(seeds=[4, 5, 6], labels=drawn).images)
    assert not np.array_equal(G.generate(seeds=[4]).images, G.generate(seeds=[4], labels=[(drawn[0] + 1) % 3]).images)
    code, out = _cli("generate", "--network", ckpt, "--seeds", "4-5", "--outdir", str(tmp_path / "o"))
    assert code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "o" / "seed0005.png")),
                                        G.generate(seeds=[5], labels=drawn[1:2]).images[0])
    code, out = _cli("generate", "--network", ckpt, "--seeds", "4-5", "--class", "turn", "--outdir", str(tmp_path / "t"))
    assert code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "t" / "seed0005.png")),
                                        G.generate(seeds=[5], labels=[2]).images[0])     # seed 5: class 5 % 3
    code, out = _cli("generate", "--network", ckpt, "--seeds", "0-1", "--class", "1", "--outdir", str(tmp_path / "c"))
    assert code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "c" / "seed0000.png")),
                                        G.generate(seeds=[0], labels=[1]).images[0])    # --class overrides seed % 3
    code, out = _cli("generate", "--network", ckpt, "--seeds", "0-1", "--class", "3", "--outdir", str(tmp_path / "o"))
    assert code == 1 and "classes 0..2" in out
    code, out = _cli("project", "--network", ckpt, "--image", str(root / "a" / "0.png"), "--outdir", str(tmp_path / "p"),
                     "--class", "5")
    assert code == 1 and "classes 0..2" in out and not (tmp_path / "p").exists()
    from pggan.serve.images import ImageService  # the explorer's grids take the same classes
    service = ImageService(os.path.dirname(ckpt))
    try:
        png = service.seeds_grid(os.path.basename(ckpt), [5], None, None, 1)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), G.generate(seeds=[5]).images[0])
    finally:
        service.close()
    # unconditional by default, even on labelled data
    cfg = tiny_config(tmp_path, data=str(tmp_path / "ds"))
    cfg.sched.total_kimg = 0.02
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    assert load_generator(list_checkpoints(run)[-1]).net.label_size == 0


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    def run(cap):
        cfg = tiny_config(tmp_path)
        cfg.net.mbstd_group_size = 0          # per-sample D, so micro-batches see the same maths
        cfg.optim.eps = 1e-4
        cfg.sched.device_batch_cap = cap
        cfg.sched.accumulate = True
        images = load_images(cfg.data, 16, 3, 64)
        t = Trainer(cfg, images, torch.device("cpu"))
        for _ in range(3):
            t.step()
        return t
    a, b = run({}), run({4: 2})
    assert a.cur_nimg == b.cur_nimg == 24
    for (n, p), q in zip(a.G.named_parameters(), b.G.parameters()):
        assert torch.allclose(p, q, atol=1e-5), n


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """torch.compile'd G and D (the penalty's D pass eager) train like the eager networks."""
    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    cfg = tiny_config(tmp_path)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    from torch._dynamo.utils import counters

    losses = {}
    counters.clear()
    for compiled in (False, True):
        trainer = Trainer(cfg.replace(compile=compiled), images, torch.device("cpu"))
        losses[compiled] = [float(trainer.step().stats["loss_d"]) for _ in range(4)]
    assert np.allclose(losses[True], losses[False], rtol=1e-3, atol=1e-4)
    assert not counters["graph_break"], dict(counters["graph_break"])   # whole networks, not per-layer pieces


def test_bf16_on_a_cpu_without_native_bf16_is_flagged(monkeypatch):
    from pggan.util.device import precision_note

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert "no native bf16" in precision_note(cpu, "bf16")
    assert precision_note(cpu, "fp32") is None
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision_note(cpu, "bf16") is None


def test_any_file_that_is_not_a_network_gives_one_line(tmp_path):
    """Text (torch's unpickler raised IndexError on it), a zip without torch's records, an empty file, and a
    safetensors name on text: one line each, never a traceback (nor torch's plea for better messages)."""
    import zipfile

    text = tmp_path / "passwd.pt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    plain_zip = tmp_path / "plain.pt"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("hello.txt", "hello")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    fake_st = tmp_path / "text.safetensors"
    fake_st.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for path, what in ((text, "pggan checkpoint"), (plain_zip, "pggan checkpoint"), (empty, "pggan checkpoint"),
                       (fake_st, "generator file")):
        for cmd in (("generate", "--network", str(path)), ("metrics", "--network", str(path), "--data", "builtin:shapes"),
                    ("interpolate", "--network", str(path), "--out", str(tmp_path / "x.gif"))):
            code, out = _cli(*cmd)
            assert code == 1 and f"not a readable {what}" in out, (cmd, out)
            assert "Traceback" not in out and "Could this error message" not in out and len(out.strip().splitlines()) == 1
    code, out = _cli("train", "--resume", str(text))
    assert code == 1 and "not a readable pggan checkpoint" in out


def test_lazy_penalty_runs_on_every_nth_d_step(tmp_path):
    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    cfg = tiny_config(tmp_path)
    cfg.loss.penalty_every = 4
    trainer = Trainer(cfg, load_images(cfg.data, 16, 3, 64, 0), torch.device("cpu"))
    with_penalty = [float(trainer.step().stats["penalty"]) > 0 for _ in range(12)]
    assert with_penalty == [True, False, False, False] * 3


def test_compile_leaves_room_for_every_levels_graphs(tmp_path, monkeypatch):
    """A compiled run needs graphs per level (fade or not, with and without gradients): dynamo's default
    limit of 8 per function would leave every level above 8x8 eager without a word."""
    import torch._dynamo.config as dynamo_config

    from pggan.data.load import load_images
    from pggan.training.trainer import COMPILED_GRAPHS_PER_LEVEL, Trainer

    monkeypatch.setattr(dynamo_config, "recompile_limit", 8)
    cfg = tiny_config(tmp_path)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    Trainer(cfg.replace(compile=True), images, torch.device("cpu"))
    assert dynamo_config.recompile_limit == COMPILED_GRAPHS_PER_LEVEL * cfg.net.resolution_log2 >= 4 * 3


def test_ema_skips_only_what_it_would_leave_as_it_is(tmp_path):
    """G_ema skips the parameters G has not trained yet (equal to their copies): the same G_ema, bit for bit,
    as lerping every parameter, across 4x4, the fade into 8x8 and 8x8; after --init, whose G_ema differs
    from G at every level, the levels above the current one move as well."""
    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    cfg = tiny_config(tmp_path)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)

    def trainer(lerp_all: bool) -> Trainer:
        t = Trainer(cfg, images, torch.device("cpu"))
        if lerp_all:
            t._ema_live = [True] * len(t._ema_live)
        return t

    names = [n for n, _ in trainer(False).G.named_parameters()]
    untouched = [i for i, n in enumerate(names) if n.startswith(("blocks.4.", "torgb.4."))]   # 16x16
    skipping, lerping = trainer(False), trainer(True)
    for t in (skipping, lerping):
        torch.manual_seed(1)
        t.cur_nimg = 150                        # 4x4, then the fade into 8x8 from 200 images on, then 8x8
        for _ in range(40):
            t.step()
    assert skipping.phase().res_log2 == 3 and not skipping.phase().fading
    for (n, x), y in zip(skipping.G_ema.state_dict().items(), lerping.G_ema.state_dict().values()):
        assert torch.equal(x, y), n
    assert not any(skipping._ema_live[i] for i in untouched)
    assert all(skipping._ema_live[i] for i, n in enumerate(names) if n.startswith(("blocks.2.", "torgb.3.")))

    ckpt = {"G": skipping.G.state_dict(), "D": skipping.D.state_dict(),
            "G_ema": {k: v + 0.5 for k, v in skipping.G_ema.state_dict().items()}}
    tuned = trainer(False)
    tuned.load_init(ckpt, "ckpt.pt")
    top = dict(tuned.G_ema.named_parameters())["torgb.4.weight"]
    before = top.clone()
    for _ in range(2):
        tuned.step()
    assert tuned.phase().res_log2 == 2 and all(tuned._ema_live)
    assert not torch.equal(top, before)


def test_no_leaky_relu_runs_on_mixed_memory_layouts(tmp_path):
    """With channels_last (the default) every leaky ReLU of a training step, forward and backward, at 4x4,
    in a fade and at 16x16, sees one layout: mixed layouts put the element-wise kernels on a slow path
    (G's dense output and D's flatten used to be NCHW between channels_last layers)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    def layouts(args):
        maps = [a for a in args if isinstance(a, torch.Tensor) and a.dim() == 4 and a.shape[1] > 1 and a[0, 0].numel() > 1]
        return {a.is_contiguous(memory_format=torch.channels_last) for a in maps}

    class Mixed(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen, self.mixed = 0, []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__.startswith("leaky_relu"):
                self.seen += 1
                if len(layouts(args)) > 1:
                    self.mixed.append(str(func))
            return func(*args, **(kwargs or {}))

    cfg = tiny_config(tmp_path)
    assert cfg.channels_last
    t = Trainer(cfg, load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed),
                torch.device("cpu"))
    mode = Mixed()
    for kimg in (0.1, 0.3, 10.0):
        t.cur_nimg = int(kimg * 1000)
        with mode:
            t.step()
    assert mode.seen > 50 and not mode.mixed, mode.mixed
