"""Using a trained generator: latent paths, videos, strips, the training video, neighbours, export."""
import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pggan.cli import main
from pggan.video import read_video_frames, slerp, smooth_latent_path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from test_training import tiny_config

    from pggan.training.run import run_training as train

    tmp = tmp_path_factory.mktemp("run")
    cfg = tiny_config(tmp)
    cfg.sched.total_kimg, cfg.image_kimg = 2.0, 0.5
    return train(cfg, progress=False, echo=lambda m: None).run_dir


def _angles(z):
    u = z / np.linalg.norm(z, axis=-1, keepdims=True)
    return np.arccos(np.clip((u[1:] * u[:-1]).sum(-1), -1, 1))


def test_latent_path_is_smooth_on_the_sphere_and_seeded():
    z = smooth_latent_path(600, 3, 64, sigma=45, seed=1)
    assert z.shape == (600, 3, 64)
    assert np.allclose(np.linalg.norm(z, axis=-1), 8.0, atol=1e-4)        # radius sqrt(64)
    assert _angles(z).max() < 0.1                                          # consecutive frames: small angle
    raw = smooth_latent_path(600, 3, 64, sigma=0, seed=1)
    assert _angles(raw).mean() > 1.2                                       # white noise: about pi/2
    wrap = np.stack([z[-1], z[0]])
    assert _angles(wrap).max() < 0.1                                       # the loop closes smoothly
    assert np.array_equal(z, smooth_latent_path(600, 3, 64, sigma=45, seed=1))
    assert not np.array_equal(z, smooth_latent_path(600, 3, 64, sigma=45, seed=2))


def test_slerp_follows_the_great_circle():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-6) and np.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    path = np.stack([slerp(a, b, t) for t in np.linspace(0, 1, 9)])
    steps = _angles(path)
    assert np.allclose(steps, steps[0], atol=1e-5)                          # equal angular steps
    total = math.acos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert math.isclose(steps.sum(), total, rel_tol=1e-5)


def test_interpolate_video_gif_and_strip(tiny_run, tmp_path):
    gen = f"{tiny_run}/generator-final.safetensors"
    mp4 = tmp_path / "walk.mp4"
    r = CliRunner().invoke(main, ["interpolate", "--network", gen, "--out", str(mp4), "--duration", "1",
                                  "--fps", "12", "--grid", "2x1", "--size", "32", "--sigma", "4"])
    assert r.exit_code == 0, r.output
    frames = read_video_frames(str(mp4))
    assert len(frames) == 12 and frames[0].shape == (32, 64, 3)
    gifs = []
    for name in ("a.gif", "b.gif"):
        r = CliRunner().invoke(main, ["interpolate", "--network", gen, "--out", str(tmp_path / name),
                                      "--duration", "0.5", "--fps", "10", "--seed", "3"])
        assert r.exit_code == 0, r.output
        gifs.append(read_video_frames(str(tmp_path / name)))
    assert len(gifs[0]) == 5 and gifs[0][0].shape == (16, 16, 3)
    assert all(np.array_equal(x, y) for x, y in zip(*gifs))                # deterministic from the seed
    r = CliRunner().invoke(main, ["interpolate", "--network", gen, "--strip", "3,7", "--steps", "6",
                                  "--out", str(tmp_path / "strip.png")])
    assert r.exit_code == 0, r.output
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    assert strip.shape[1] == 6 * strip.shape[0]
    from pggan.api import load_generator
    ends = load_generator(gen).generate(seeds=[3, 7]).images               # the ends are the seeds' images
    assert np.abs(strip[:, :16].astype(int) - ends[0]).max() <= 1
    assert np.abs(strip[:, -16:].astype(int) - ends[1]).max() <= 1
    assert not list(tmp_path.glob(".tmp-*"))


def test_interpolate_refuses_bad_requests(tiny_run, tmp_path, monkeypatch):
    gen = f"{tiny_run}/generator-final.safetensors"

    def run(*args):
        return CliRunner().invoke(main, ["interpolate", "--network", gen, *args])

    r = run("--out", str(tmp_path / "x.avi"))
    assert r.exit_code == 1 and "must end in .mp4 or .gif" in r.output
    r = run("--class", "2", "--out", str(tmp_path / "x.gif"))
    assert r.exit_code == 1 and "not conditional" in r.output
    r = run("--fps", "0", "--out", str(tmp_path / "x.gif"))
    assert r.exit_code == 1 and "at least 2 frames" in r.output
    r = run("--grid", "2by2", "--out", str(tmp_path / "x.gif"))
    assert r.exit_code == 1 and "--grid must look like 2x2" in r.output
    monkeypatch.setattr("pggan.video.available_memory", lambda: 1 << 20)
    r = run("--out", str(tmp_path / "big.gif"), "--duration", "100", "--size", "256")
    assert r.exit_code == 1 and "in memory for a GIF" in r.output and "write an .mp4" in r.output
    r = CliRunner().invoke(main, ["interpolate", "--network", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a.gif")])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".gif", ".mp4"))]


def test_training_video(tiny_run, tmp_path):
    out = tmp_path / "t.gif"
    r = CliRunner().invoke(main, ["training-video", tiny_run, "--out", str(out), "--size", "64"])
    assert r.exit_code == 0, r.output
    frames = read_video_frames(str(out))
    grids = sorted(f for f in os.listdir(tiny_run) if f.startswith("fakes"))
    assert len(frames) == len(grids) == 4 and frames[0].shape[1] == 64      # at 0.5, 1, 1.5 and 2 kimg
    assert frames[0].shape[0] > 64 and frames[0][:8].max() > 0              # the caption band is there
    r = CliRunner().invoke(main, ["training-video", tiny_run, "--out", str(tmp_path / "t.mp4")])
    assert r.exit_code == 0 and len(read_video_frames(str(tmp_path / "t.mp4"))) == 4
    r = CliRunner().invoke(main, ["training-video", str(tmp_path), "--out", str(tmp_path / "u.gif")])
    assert r.exit_code == 1 and "no image grids" in r.output


def test_nearest_neighbors_streamed_equals_brute_force():
    from pggan.explore import nearest_neighbors

    g = torch.Generator().manual_seed(0)
    bank, q = torch.randn(100, 7, generator=g), torch.randn(5, 7, generator=g)
    q[0] = bank[42]
    d, i = nearest_neighbors(q, bank.split(13), 4)
    full = torch.cdist(q.double(), bank.double()) ** 2
    want_d, want_i = torch.topk(full, 4, largest=False)
    assert torch.equal(i, want_i) and torch.allclose(d, want_d)
    assert i[0, 0] == 42 and d[0, 0] < 1e-9


def test_neighbors_command(tiny_run, tmp_path):
    from tiny_inception import write_tiny_inception

    gen = f"{tiny_run}/generator-final.safetensors"
    for space in ("pixel", "inception"):
        out = tmp_path / f"nb-{space}.png"
        args = ["neighbors", "--network", gen, "--data", "builtin:shapes", "--data-count", "64", "--seeds", "0-2",
                "--k", "3", "--space", space, "--out", str(out)]
        if space == "inception":
            args += ["--inception", write_tiny_inception(tmp_path / "tiny.pth")]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert np.asarray(Image.open(out)).shape == (3 * 64 + 2 * 2, 4 * 64 + 4, 3)
    r = CliRunner().invoke(main, ["neighbors", "--network", gen, "--data", "builtin:shapes", "--space", "inception",
                                  "--inception", str(tmp_path / "missing.pth")])
    assert r.exit_code == 1 and "pt_inception" in r.output


def test_export_safetensors_json_onnx(tiny_run, tmp_path):
    from pggan.api import load_generator

    ckpt = sorted(p for p in os.listdir(tiny_run) if p.startswith("checkpoint"))[-1]
    r = CliRunner().invoke(main, ["export", "--network", f"{tiny_run}/{ckpt}", "--outdir", str(tmp_path / "x"),
                                  "--resolution", "8"])
    assert r.exit_code == 0, r.output
    assert "max |ONNX - PyTorch|" in r.output
    diff = float(r.output.split("= ")[-1])
    assert diff < 1e-4
    meta = json.load(open(tmp_path / "x" / "generator.json"))
    assert meta["z_dim"] == 16 and meta["net"]["resolution"] == 16
    a = load_generator(str(tmp_path / "x" / "generator.safetensors")).generate(seeds=[1, 2])
    b = load_generator(f"{tiny_run}/{ckpt}").generate(seeds=[1, 2])
    assert np.array_equal(a.images, b.images) and a.images.dtype == np.uint8 and len(a.pil()) == 2
    import onnx
    model = onnx.load(str(tmp_path / "x" / "generator-8.onnx"))
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim][1:] == [3, 8, 8]
    r = CliRunner().invoke(main, ["export", "--network", f"{tiny_run}/{ckpt}", "--outdir", str(tmp_path / "y"),
                                  "--resolution", "12"])
    assert r.exit_code == 1 and "power of two" in r.output


def test_mp4_falls_back_to_gif_without_imageio_ffmpeg(tiny_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)          # as if the package were not installed
    r = CliRunner().invoke(main, ["interpolate", "--network", f"{tiny_run}/generator-final.safetensors",
                                  "--out", str(tmp_path / "walk.mp4"), "--duration", "0.3", "--fps", "10"])
    assert r.exit_code == 0, r.output
    assert "a GIF was written instead" in r.output and (tmp_path / "walk.gif").is_file()
    assert not (tmp_path / "walk.mp4").exists() and len(read_video_frames(str(tmp_path / "walk.gif"))) == 3


def test_generate_writes_any_number_of_images_a_batch_at_a_time(tiny_run, tmp_path, monkeypatch):
    from pggan.api import load_generator
    from pggan.explore import write_images
    from pggan.util.grids import make_grid

    gen = load_generator(tiny_run)
    seeds = list(range(40))
    whole = gen.generate(seeds=seeds).images
    sizes, done, real_generate = [], [], gen.generate

    def spy(**kw):
        sizes.append(len(kw["seeds"]))
        return real_generate(**kw)

    monkeypatch.setattr(gen, "generate", spy)
    paths = write_images(gen, seeds, str(tmp_path / "files"), progress=done.append)
    assert sizes == [16, 16, 8] and done == sizes                 # never more than a batch in memory
    assert [os.path.basename(p) for p in paths[:2]] == ["seed0000.png", "seed0001.png"] and len(paths) == 40
    for s in (0, 17, 39):                                         # the same images as one call for all seeds
        assert np.array_equal(np.asarray(Image.open(paths[s])), whole[s])
    (grid,) = write_images(gen, seeds, str(tmp_path / "grid"), grid=True)
    assert np.array_equal(np.asarray(Image.open(grid)), make_grid(whole, 6))


def test_generate_refuses_what_it_could_not_write_or_read(tiny_run, tmp_path, monkeypatch):
    from pggan import explore

    out = tmp_path / "out"
    monkeypatch.setattr(explore, "GRID_PIXELS_MAX", 16 * 16 * 99)          # 100 images of 16x16 are more
    r = CliRunner().invoke(main, ["generate", "--network", tiny_run, "--seeds", "0-99", "--grid", "--outdir", str(out)])
    assert r.exit_code == 1 and "a grid of 100 images of 16x16" in r.output and "drop --grid" in r.output, r.output
    assert not out.exists()
    for seeds, said in (("0-10000000", "10,000,001 images, more than one call makes"),
                        (str(2 ** 64), "too large: seeds are below 2**64")):
        r = CliRunner().invoke(main, ["generate", "--network", tiny_run, "--seeds", seeds, "--outdir", str(out)])
        assert r.exit_code == 1 and said in r.output and "Traceback" not in r.output, r.output
