"""``pggan metrics --images FOLDER``: a folder of images scored in full against the data."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pggan.cli import main
from pggan.data.builtin import render_builtin


def write_folder(path, images: np.ndarray):
    path.mkdir()
    for i, im in enumerate(images):                     # [N, C, R, R] -> files of [R, R, C]
        Image.fromarray(im.transpose(1, 2, 0)).save(path / f"{i:04d}.png")
    return str(path)


@pytest.fixture
def folders(tmp_path):
    a = render_builtin("shapes", 48, 16, seed=1)
    b = render_builtin("shapes", 48, 16, seed=2)
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    return (write_folder(tmp_path / "a", a), write_folder(tmp_path / "b", b), write_folder(tmp_path / "noise", noise),
            tmp_path)


def test_fid_of_two_folders_uses_every_image_of_both(folders):
    """Two folders of 48 images: FID equals the Frechet distance of all 48 + 48 images' features."""
    from tiny_inception import write_tiny_inception

    from pggan.metrics.evaluate import MetricOptions, evaluate_images
    from pggan.metrics.fid import frechet_distance
    from pggan.metrics.inception import load_inception

    a, b, noise, tmp = folders
    weights = write_tiny_inception(tmp / "tiny.pth")
    opts = MetricOptions(["fid", "swd"], inception=weights, cache_dir=str(tmp / "cache"))
    r = evaluate_images(a, b, opts)
    assert r["num"] == 48 and r["num_real"] == 48 and r["resolution"] == 16

    net = load_inception(weights)
    stats = []
    for folder in (a, b):
        x = torch.from_numpy(np.stack([np.asarray(Image.open(f"{folder}/{i:04d}.png")) for i in range(48)]))
        with torch.no_grad():
            f = net(x.permute(0, 3, 1, 2).float())[0].double().numpy()
        stats.append((f.mean(0), np.cov(f, rowvar=False)))
    assert r["fid"] == pytest.approx(frechet_distance(*stats[0], *stats[1]), rel=1e-3)
    assert evaluate_images(a, a, opts)["fid"] == pytest.approx(0, abs=1e-3)
    assert evaluate_images(noise, b, opts)["swd"]["avg"] > 3 * r["swd"]["avg"]


def test_metrics_command_images(folders):
    from tiny_inception import write_tiny_inception

    a, b, _, tmp = folders
    weights = write_tiny_inception(tmp / "tiny.pth")
    r = CliRunner().invoke(main, ["metrics", "--images", a, "--data", b, "--metrics", "fid,kid,swd",
                                  "--inception", weights, "--cache-dir", str(tmp / "c")])
    assert r.exit_code == 0, r.output
    assert "FID" in r.output and "KID" in r.output and "48 images of" in r.output and "against 48" in r.output
    assert not list(tmp.glob("a/*.jsonl"))               # a folder of images is read, never written to

    def fails(args, text):
        r = CliRunner().invoke(main, ["metrics", "--data", b] + args)
        assert r.exit_code != 0 and text in r.output and "Traceback" not in r.output, r.output

    fails([], "one of the two")
    fails(["--images", a, "--network", a], "one of the two")
    fails(["--images", a, "--metrics", "msssim"], "leave msssim out")
    fails(["--images", str(tmp / "missing")], "is not a folder")
    Image.new("RGB", (20, 12)).save(tmp / "a" / "0000.png")
    fails(["--images", a], "not a square power of two")
    r = CliRunner().invoke(main, ["metrics", "--images", a, "--data", b, "--resolution", "16"])
    assert r.exit_code == 0 and "SWD" in r.output, r.output
