"""Projection of images into the latent space (`pggan project`, `LoadedGenerator.project`)."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_training import tiny_config

from pggan.api import load_generator
from pggan.cli import main
from pggan.project import ProjectOptions
from pggan.training.run import run_training
from pggan.util.errors import UsageError


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    """A small generator trained on the built-in shapes up to 16x16."""
    tmp = tmp_path_factory.mktemp("proj")
    cfg = tiny_config(tmp)
    cfg.sched.total_kimg = 2.0
    return os.path.join(run_training(cfg, progress=False, echo=lambda m: None).run_dir, "generator-final.safetensors")


def test_a_generated_image_is_projected_back_close_to_itself(generator, tmp_path):
    gen = load_generator(generator)
    target = gen.generate(seeds=[1234]).images[0]                       # uint8 [16, 16, 3]
    p = gen.project(target, steps=200, seed=0)
    err = np.abs(p.image.astype(float) - target.astype(float)).mean() / 255
    # measured: mean absolute error 0.017 of the range after 200 steps (threshold 0.03); another seed: 0.13
    assert err < 0.03, err
    far = np.abs(gen.generate(seeds=[99]).images[0].astype(float) - target.astype(float)).mean() / 255
    assert err < far / 3
    assert p.terms == ["pixel", "msssim"] and p.distances["total"] < 0.5 * p.history[0][1]
    totals = [d for _, d in p.history]
    # the distance falls over the steps (Adam with a decaying latent noise: nearly monotone, not strictly)
    quarters = [np.mean(totals[i * len(totals) // 4:(i + 1) * len(totals) // 4]) for i in range(4)]
    assert quarters == sorted(quarters, reverse=True)
    assert np.isclose(np.linalg.norm(p.z), np.sqrt(gen.z_dim), rtol=1e-5)           # on G's sphere
    assert np.array_equal(gen.generate(z=p.z[None]).images[0], p.image)              # z reproduces the image


def test_the_inception_term(generator, tmp_path):
    from tiny_inception import write_tiny_inception

    gen = load_generator(generator)
    target = gen.generate(seeds=[3]).images[0]
    p = gen.project(target, steps=3, inception=write_tiny_inception(tmp_path / "i.pth"))
    assert p.terms == ["pixel", "msssim", "inception"] and p.distances["inception"] >= 0


def test_project_command_outputs_and_interpolating_two_projections(generator, tmp_path):
    gen = load_generator(generator)
    for name, seed in (("a", 5), ("b", 6)):
        Image.fromarray(gen.generate(seeds=[seed]).images[0]).resize((40, 40)).save(tmp_path / f"{name}.png")
    r = CliRunner().invoke(main, ["project", "--network", generator, "--image", str(tmp_path / "a.png"),
                                  "--image", str(tmp_path / "b.png"), "--outdir", str(tmp_path / "out"), "--steps", "40"])
    assert r.exit_code == 0, r.output
    for name in ("a", "b"):
        folder = tmp_path / "out" / name
        assert sorted(os.listdir(folder)) == ["distances.json", "progress.png", "proj.png", "target.png", "z.npy"]
        d = json.loads((folder / "distances.json").read_text())
        assert d["terms"] == ["pixel", "msssim"] and d["final"]["total"] < d["initial_total"]
        assert Image.open(folder / "target.png").size == (16, 16)                  # brought to G's resolution
        assert Image.open(folder / "progress.png").size[0] == 9 * 16               # 8 snapshots and the target
    za, zb = (str(tmp_path / "out" / n / "z.npy") for n in ("a", "b"))
    r = CliRunner().invoke(main, ["interpolate", "--network", generator, "--strip", f"{za},{zb}", "--steps", "5",
                                  "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    first = gen.generate(z=np.load(za)[None]).images[0]
    assert np.array_equal(strip[:16, :16], first)                              # the strip starts at projection a


def test_bad_projection_inputs_give_one_line(generator, tmp_path):
    def run(*args):
        r = CliRunner().invoke(main, ["project", "--network", generator, "--outdir", str(tmp_path / "o"), *args])
        assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1, r.output
        return r.output

    (tmp_path / "text.png").write_text("not an image")
    assert "cannot be used" in run("--image", str(tmp_path / "text.png"))
    assert "No such file" in run("--image", str(tmp_path / "missing.png"))
    assert "steps >= 1" in run("--image", str(tmp_path / "text.png"), "--steps", "0")
    r = CliRunner().invoke(main, ["project", "--network", str(tmp_path / "text.png"), "--image", str(tmp_path / "text.png")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    np.save(tmp_path / "short.npy", np.zeros(3, np.float32))
    r = CliRunner().invoke(main, ["interpolate", "--network", generator, "--strip", f"{tmp_path / 'short.npy'},1",
                                  "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 1 and "latent has 16" in r.output
    with pytest.raises(UsageError):
        ProjectOptions(lr=0).validate()
    with pytest.raises(UsageError, match="1, 3 or 4 channels"):
        load_generator(generator).project(np.zeros((16, 16, 2), np.uint8), steps=1)
