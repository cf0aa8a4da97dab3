"""Fine-tuning (`pggan train --init`): weights in, fresh counters, the schedule from the network's level."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_official import tf_pickle, tf_variables
from test_training import tiny_config

from pggan.api import load_generator
from pggan.checkpoint import list_checkpoints
from pggan.cli import main
from pggan.config import ConfigError
from pggan.data.create import ConvertOptions, create_dataset
from pggan.data.sources import open_source
from pggan.official.convert import convert_file
from pggan.training.launch import given_options, init_config
from pggan.training.plan import RunRequest, plan_run
from pggan.training.run import run_training
from pggan.training.trainer import grid_latents
from pggan.util.grids import make_grid, to_uint8

SETS = ["data_count=64", "sched.batch_base=8", "sched.lod_training_kimg=0.2", "sched.lod_transition_kimg=0.2",
        "tick_kimg=0.1", "image_kimg=0.5", "checkpoint_kimg=0", "grid_size=4"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A network trained on the built-in shapes up to 16x16."""
    tmp = tmp_path_factory.mktemp("src")
    run = run_training(tiny_config(tmp), progress=False, echo=lambda m: None).run_dir
    return list_checkpoints(run)[-1]


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """Another data set: a folder of coloured squares on white."""
    folder = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for i in range(40):
        a = np.full((32, 32, 3), 255, np.uint8)
        x, y, s = rng.integers(0, 16, 3)
        a[y:y + s + 8, x:x + s + 8] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(folder / f"{i}.png")
    return str(folder)


def _flags(tmp_path, data, **kw):
    return dict({"data": data, "sched.total_kimg": 0.3, "outdir": str(tmp_path / "runs"), "precision": "fp32"}, **kw)


def test_fine_tuning_starts_from_the_networks_weights_at_its_level(tmp_path, source, squares):
    cfg = init_config(source, None, None, _flags(tmp_path, squares), SETS)
    assert cfg.sched.start_resolution == 16 and cfg.net.resolution == 16 and cfg.init == os.path.abspath(source)
    src = load_generator(source)
    assert (cfg.net.fmap_base, cfg.net.latent_size) == (src.net.fmap_base, src.net.latent_size)
    result = run_training(cfg, progress=False, echo=lambda m: None)
    run = result.run_dir
    # the first grid is the loaded network's output for the run's grid latents
    z, labels = grid_latents(cfg, None)
    want = make_grid(to_uint8(src.G(z, None, 4, 1.0)), cfg.grid_size, cfg.net.resolution)
    got = np.asarray(Image.open(os.path.join(run, "fakes000000.000.png")))
    # the same network; the run's kernels may round a pixel differently (seen on a CPU with AVX-512: 1 of 12,288)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).sum())
    stats = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    assert stats[0]["kimg"] < 0.2 and {s["resolution"] for s in stats} == {16} and all(s["alpha"] == 1 for s in stats)
    assert result.cur_nimg < 1000                                     # counters start at 0, not at the source's
    assert "fine-tuning" in open(os.path.join(run, "log.txt")).read()


def test_fine_tuning_to_a_higher_resolution_grows_from_the_networks_level(tmp_path, source, squares):
    cfg = init_config(source, None, None, _flags(tmp_path, squares, **{"net.resolution": 32, "sched.total_kimg": 0.6}),
                      SETS)
    assert (cfg.sched.start_resolution, cfg.net.resolution) == (16, 32)
    run = run_training(cfg, progress=False, echo=lambda m: None).run_dir
    stats = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    assert [s["resolution"] for s in stats][:2] == [16, 16] and stats[-1]["resolution"] == 32
    assert any(s["alpha"] < 1 for s in stats if s["resolution"] == 32)          # faded in, as usual


def test_a_converted_official_network_fine_tunes(tmp_path, squares):
    pkl = tf_pickle(tmp_path / "net.pkl", *tf_variables())
    convert_file(pkl, str(tmp_path / "net.pt"))
    cfg = init_config(str(tmp_path / "net.pt"), None, None, _flags(tmp_path, squares, **{"sched.total_kimg": 0.1}), SETS)
    assert cfg.sched.start_resolution == 16 and cfg.net.latent_size == 24
    assert not run_training(cfg, progress=False, echo=lambda m: None).interrupted


def _labelled(tmp_path, squares, count=8):
    """A dataset of two classes (a and b) at 16x16."""
    classes = tmp_path / "classes"
    for i, name in enumerate(sorted(os.listdir(squares))[:count]):
        (classes / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.open(os.path.join(squares, name)).save(classes / "ab"[i % 2] / name)
    create_dataset(open_source(str(classes), "auto", labels="folders"), str(tmp_path / "labelled"),
                   ConvertOptions(resolution=16, workers=1), progress=False)
    return str(tmp_path / "labelled")


def _request(src, flags, sets):
    """--init as `pggan train` makes its request: the options and which of them were given."""
    return RunRequest(init_config(src, None, None, flags, sets), given_options(None, flags, sets))


def test_a_conditional_network_fine_tunes_without_its_classes_only_when_asked(tmp_path, squares):
    import torch

    cpu = torch.device("cpu")
    cfg = tiny_config(tmp_path, conditional=True)
    cfg.data, cfg.data_count, cfg.sched.total_kimg = _labelled(tmp_path, squares, 40), 40, 0.3
    src = list_checkpoints(run_training(cfg, progress=False, echo=lambda m: None).run_dir)[-1]
    with pytest.raises(ConfigError, match="--set conditional=false to drop them"):
        plan_run(_request(src, _flags(tmp_path, squares), SETS), cpu)
    # or its classes learn as many clusters of the new images: new ones, since its classes were labels
    spec = plan_run(_request(src, _flags(tmp_path, squares), SETS + ["clusters=2"]), cpu)[0]
    assert spec.config.net.label_size == 2 and spec.labels.kind == "clusters" and "new clusters" in spec.labels.why
    with pytest.raises(ConfigError, match="cannot learn 3 clusters; use --set clusters=2"):
        plan_run(_request(src, _flags(tmp_path, squares), SETS + ["clusters=3"]), cpu)
    ft = _request(src, _flags(tmp_path, squares, **{"sched.total_kimg": 0.05}), SETS + ["conditional=false"])
    assert plan_run(ft, cpu)[0].config.net.label_size == 0
    run = run_training(ft, progress=False, echo=lambda m: None).run_dir
    first = torch.load(list_checkpoints(run)[-1], weights_only=True)
    source = torch.load(src, weights_only=True)
    z = ft.config.net.z_dim
    assert source["G"]["blocks.2.dense.weight"].shape[1] == z + 2 and first["G"]["blocks.2.dense.weight"].shape[1] == z
    assert source["D"]["blocks.2.dense1.weight"].shape[0] == 3 and first["D"]["blocks.2.dense1.weight"].shape[0] == 1


def test_bad_inits_fail_with_one_line(tmp_path, source, squares):
    runner = CliRunner()

    def train(*args):
        r = runner.invoke(main, ["train", "--no-progress", "--outdir", str(tmp_path / "r"), *args])
        assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1, r.output
        return r.output

    gen = os.path.join(os.path.dirname(source), "generator-final.safetensors")
    assert "discriminator" in train("--init", gen, "--data", squares)
    assert "not a readable" in train("--init", __file__, "--data", squares)
    gray = tmp_path / "gray"
    create_dataset(open_source(squares, "auto"), str(gray), ConvertOptions(resolution=16, channels=1, workers=1),
                   progress=False)
    assert "convert the source again with --channels 3" in train("--init", source, "--data", str(gray))
    assert "drop net.fmap_base" in train("--init", source, "--data", squares, "--set", "net.fmap_base=128")
    assert "cannot go below" in train("--init", source, "--data", squares, "--resolution", "8")
    assert "is unconditional and cannot learn 2 clusters" in train("--init", source, "--data", squares,
                                                                     "--set", "clusters=2")
    assert "use one" in train("--init", source, "--resume", "latest")
    labelled = _labelled(tmp_path, squares)
    assert "cannot learn the data's classes" in train("--init", source, "--data", labelled, "--set", "conditional=true")
    assert "--set conditional=false to fine-tune it without them" in train("--init", source, "--data", labelled)
    cfg = init_config(source, None, None, _flags(tmp_path, labelled), SETS + ["conditional=false"])   # said: allowed
    assert not cfg.conditional and cfg.net.label_size == 0
    with pytest.raises(ConfigError, match="discriminator"):
        init_config(gen, None, None, _flags(tmp_path, squares), SETS)


def test_freeze_d_keeps_the_chosen_blocks_fixed(tmp_path, source, squares):
    import torch

    from pggan.data.load import load_images
    from pggan.training.trainer import Trainer

    cfg = init_config(source, None, None, _flags(tmp_path, squares), SETS + ["freeze_d=2"])
    images = load_images(cfg.data, 16, 3, 40, 0)
    t = Trainer(cfg, images, torch.device("cpu"))
    t.load_init(torch.load(source, weights_only=True), source)
    assert t.frozen_d == [16, 8]                                   # the two blocks nearest the image
    before = {k: v.clone() for k, v in t.D.state_dict().items()}
    for _ in range(3):
        t.step()
    after = t.D.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.split(".")[1] == "2" for k in changed)      # only the 4x4 head trained
    t_low = Trainer(cfg.replace(freeze_d=-1), images, torch.device("cpu"))
    assert t_low.frozen_d == [4]
    with pytest.raises(ConfigError, match="freeze_d must leave"):
        init_config(source, None, None, _flags(tmp_path, squares), SETS + ["freeze_d=3"])
