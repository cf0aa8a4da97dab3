"""A conditional network's class prior: stored with it, drawn from by every command (issue: a network
trained on pggan's clusters is used as an unconditional one)."""
import io
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pggan.api import load_generator
from pggan.checkpoint import save_checkpoint, save_generator
from pggan.classes import ClassPrior, blend_classes, class_uniforms, classes_from_uniforms, parse_class
from pggan.cli import main
from pggan.config import NetworkConfig, TrainConfig
from pggan.networks import Generator

PRIOR = ClassPrior((0.5, 0.25, 0.15, 0.1), "clusters")


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """A 16x16 generator of 4 clusters with an unbalanced prior, saved as pggan's generator file."""
    torch.manual_seed(3)
    net = NetworkConfig(resolution=16, fmap_base=64, fmap_max=32, latent_size=16, label_size=4)
    G = Generator(net).eval()
    path = str(tmp_path_factory.mktemp("net") / "generator.safetensors")
    save_generator(path, G, net, {"classes": PRIOR.to_json(), "resolution": 16, "alpha": 1.0})
    return path


def _chi2(classes, freqs):
    want = np.asarray(freqs) * len(classes)
    got = np.bincount(classes, minlength=len(freqs))
    return float(((got - want) ** 2 / want).sum())


def test_twenty_thousand_seeds_follow_an_unbalanced_prior(clustered):
    gen = load_generator(clustered)
    assert gen.classes == ClassPrior(PRIOR.freqs, "clusters") and gen.classes.implicit
    seeds = range(20_000)
    drawn = gen.class_labels(None, seeds)
    assert _chi2(drawn, PRIOR.freqs) < 16.27                       # chi-square, 3 d.o.f., p = 0.001
    assert _chi2(gen.class_labels("turn", seeds), PRIOR.freqs) > 1000   # classes in turn: uniform, far off
    assert np.array_equal(drawn, PRIOR.draw(seeds))                 # the same draw every time
    assert gen.class_labels(2, [5, 6]).tolist() == [2, 2]


def test_latents_without_labels_draw_their_classes_from_the_prior(clustered):
    """generate(z=...) as generate(seeds=...): the prior's mix, not classes in turn or uniform, nor a refusal."""
    gen = load_generator(clustered)
    n = 20_000
    drawn = gen.latent_classes(None, n, class_seed=7)
    assert _chi2(drawn, PRIOR.freqs) < 16.27 and _chi2(drawn, [0.25] * 4) > 1000
    assert np.array_equal(drawn, gen.latent_classes("prior", n, class_seed=7))     # the same stream every time
    assert not np.array_equal(drawn, gen.latent_classes(None, n, class_seed=8))
    assert gen.latent_classes("turn", 6).tolist() == [0, 1, 2, 3, 0, 1]
    z = np.random.default_rng(0).standard_normal((8, gen.z_dim)).astype(np.float32)
    classes = gen.latent_classes(None, 8)
    assert np.array_equal(gen.generate(z=z).images, gen.generate(z=z, labels=classes).images)


def test_projection_starts_draw_their_classes_from_the_prior(clustered, monkeypatch):
    import pggan.project as project_module

    gen = load_generator(clustered)
    seen = {}

    def spy(G, z_dim, target, opts, device, labels, progress):
        seen["classes"] = labels.argmax(1).numpy()
        raise StopIteration
    monkeypatch.setattr(project_module, "project", spy)
    with pytest.raises(StopIteration):
        gen.project(np.zeros((16, 16, 3), np.uint8), steps=1, starts=4000)
    assert _chi2(seen["classes"], PRIOR.freqs) < 16.27 and _chi2(seen["classes"], [0.25] * 4) > 100


def test_the_class_stream_leaves_z_as_it_is_and_the_inverse_cdf_is_exact():
    from pggan.api import latents_for_seeds
    u = class_uniforms([0, 1, 2])
    assert np.array_equal(u, class_uniforms([0, 1, 2])) and (0 <= u).all() and (u < 1).all()
    z = latents_for_seeds([0, 1], 8)
    assert torch.equal(z[0], torch.randn(8, generator=torch.Generator().manual_seed(0)))   # as unconditional
    cum = np.array([0.5, 0.75, 0.9])
    assert classes_from_uniforms(np.array([0.0, 0.4999, 0.5, 0.8, 0.95]), cum).tolist() == [0, 0, 1, 2, 3]
    assert parse_class("prior") == "prior" and parse_class(" 3") == 3 and parse_class(None) is None
    with pytest.raises(ValueError, match="class number, 'prior'"):
        parse_class("cats")


def test_one_seed_is_one_image_through_generate_the_api_serve_and_a_strip(clustered, tmp_path):
    from pggan.explore import interpolation_strip
    from pggan.serve.images import ImageService

    gen = load_generator(clustered)
    seeds = [int(s) for s in range(40) if PRIOR.draw([s])[0] != PRIOR.draw([0])[0]][:1] + [0]   # two classes
    want = gen.generate(seeds=seeds).images
    code, out = _cli("generate", "--network", clustered, "--seeds", f"{seeds[0]},{seeds[1]}", "--outdir", tmp_path / "o")
    assert code == 0, out
    for s, w in zip(seeds, want):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / f"seed{s:04d}.png")), w)
    service = ImageService(os.path.dirname(clustered))
    try:
        rel = os.path.basename(clustered)
        png = service.seeds_grid(rel, [seeds[0]], None, None, 1)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), want[0])
        at0 = service.interpolation(rel, seeds[0], seeds[1], 0.0, None, None)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(at0))), want[0])
        assert service.classes(rel)["source"] == "clusters"
    finally:
        service.close()
    strip = interpolation_strip(gen, seeds[0], seeds[1], 5, str(tmp_path / "s.png"))
    assert np.array_equal(strip[:, :16], want[0]) and np.array_equal(strip[:, -16:], want[1])
    # a grid of the explorer with one cluster asked for
    assert not np.array_equal(gen.generate(seeds=[seeds[0]], class_idx=int(PRIOR.draw([seeds[1]])[0])).images[0],
                              want[0])


def _steps(x: torch.Tensor) -> np.ndarray:
    return (x[1:] - x[:-1]).abs().flatten(1).mean(1).numpy()


def test_an_interpolation_between_two_classes_has_no_jump(clustered):
    from pggan.explore import latent_of

    gen = load_generator(clustered)
    a, b = 0, next(s for s in range(1, 100) if PRIOR.draw([s])[0] != PRIOR.draw([0])[0])
    la, lb = gen.class_labels(None, [a, b])
    ca, cb = np.eye(4, dtype=np.float32)[[la, lb]]
    from pggan.video import slerp
    ts = np.linspace(0, 1, 33)
    z = np.stack([slerp(latent_of(a, 16), latent_of(b, 16), t) for t in ts])
    labels = blend_classes(la, lb, 4, ts)
    np.testing.assert_allclose(labels[[0, 16, 32]], [ca, (ca + cb) / 2, cb], atol=1e-6)
    blended = gen.generate(z=z, labels=labels).tensor
    switched = gen.generate(z=z, labels=np.where(ts[:, None] < 0.5, ca, cb)).tensor       # the class as a step
    smooth, jump = _steps(blended), _steps(switched)
    assert smooth.max() < 2.0 * np.median(smooth), smooth
    assert jump.max() > 2.0 * np.median(jump), jump                 # the check sees a class that jumps


def test_a_video_fades_between_classes_drawn_from_the_prior(clustered):
    from pggan.explore import class_path

    gen = load_generator(clustered)
    sigma = 10.0
    path = class_path(gen, 4000, 2, sigma, seed=1)
    assert path.shape == (4000, 2, 4) and np.allclose(path.sum(-1), 1, atol=1e-5)
    assert np.abs(np.diff(path, axis=0)).max() <= 1.05 / (sigma * np.sqrt(2 * np.pi))    # a blurred step, no more
    assert (path.max(-1) > 0.95).mean() > 0.5                        # mostly one class at a time
    held = path[::80].argmax(-1).ravel()
    assert _chi2(held, PRIOR.freqs) < 30
    fixed = class_path(gen, 10, 3, sigma, seed=1, class_idx="turn")
    assert fixed.argmax(-1)[0].tolist() == [0, 1, 2] and (fixed == fixed[:1]).all()


def test_projection_of_a_clustered_network_needs_no_class_and_its_strip_keeps_it(clustered, tmp_path):
    gen = load_generator(clustered)
    seed = next(s for s in range(100) if PRIOR.draw([s])[0] == 3)
    Image.fromarray(gen.generate(seeds=[seed]).images[0]).save(tmp_path / "t.png")
    code, out = _cli("project", "--network", clustered, "--image", tmp_path / "t.png", "--outdir", tmp_path / "p",
                     "--steps", 40, "--starts", 8)
    assert code == 0 and ", class " in out, out
    proj = tmp_path / "p" / "t"
    k = int(np.load(proj / "class.npy"))
    assert json.loads((proj / "distances.json").read_text())["class"] == k
    record = json.loads((proj / "distances.json").read_text())
    assert record["final"]["total"] < record["initial_total"]
    # the strip from the projection to itself is the projected image, in the projection's class
    code, out = _cli("interpolate", "--network", clustered, "--strip", f"{proj}/z.npy,{proj}/z.npy", "--steps", 2,
                     "--out", tmp_path / "s.png")
    assert code == 0, out
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    z = np.load(proj / "z.npy")[None]
    again = gen.generate(z=z, labels=[k]).images[0]
    assert np.array_equal(strip[:, :16], again)
    assert np.abs(again.astype(int) - np.asarray(Image.open(proj / "proj.png")).astype(int)).max() <= 1
    os.unlink(proj / "class.npy")                                  # a latent without its class needs --class
    code, out = _cli("interpolate", "--network", clustered, "--strip", f"{proj}/z.npy,1", "--out", tmp_path / "u.png")
    assert code == 1 and "no class.npy beside it" in out


def test_networks_saved_before_the_prior_load_with_a_uniform_one(tmp_path):
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, fmap_base=32, fmap_max=16, latent_size=8, label_size=3)
    G = Generator(net)
    save_generator(str(tmp_path / "old.safetensors"), G, net)                  # no classes in the metadata
    old = load_generator(str(tmp_path / "old.safetensors"))
    assert old.classes == ClassPrior.uniform(3, "labels")
    cfg = TrainConfig(net=net, clusters=3)
    save_checkpoint(str(tmp_path / "old.pt"), {"config": cfg.to_json(), "G": G.state_dict(), "G_ema": G.state_dict(),
                                               "D": {}, "cur_nimg": 0})
    ck = load_generator(str(tmp_path / "old.pt"))
    assert ck.classes == ClassPrior.uniform(3, "clusters") and ck.classes.implicit
    assert ck.generate(seeds=[0, 1]).images.shape == (2, 8, 8, 3)
    bad = dict(json.loads(PRIOR.to_json()))
    save_generator(str(tmp_path / "bad.safetensors"), G, net, {"classes": json.dumps(bad)})   # 4 shares, 3 classes
    code, out = _cli("generate", "--network", tmp_path / "bad.safetensors", "--outdir", tmp_path / "o")
    assert code == 1 and "does not fit a network of 3 classes" in out


def test_training_stores_the_prior_and_draws_its_grid_from_it(tmp_path):
    from test_training import tiny_config

    from pggan.checkpoint import list_checkpoints, load_checkpoint
    from pggan.training.run import run_training

    cfg = tiny_config(tmp_path, clusters=3)
    cfg.sched.total_kimg = 0.1
    run = run_training(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = load_checkpoint(list_checkpoints(run)[-1])
    prior = ClassPrior.from_json(ckpt["classes"], 3)
    assert prior.implicit and abs(sum(prior.freqs) - 1) < 1e-6
    final = load_generator(os.path.join(run, "generator-final.safetensors"))
    assert final.classes == prior


def test_metrics_during_training_draw_from_the_runs_prior(tmp_path, monkeypatch):
    from test_training import tiny_config

    from pggan.training import metric_tracker
    from pggan.training.plan import run_data
    from pggan.training.trainer import Trainer

    seen, real = [], metric_tracker.image_sources
    monkeypatch.setattr(metric_tracker, "image_sources", lambda gen, *a: seen.append(gen.classes) or real(gen, *a))
    cfg, images = run_data(tiny_config(tmp_path, clusters=3, metrics="swd", metrics_num=16))
    t = Trainer(cfg, images, torch.device("cpu"))
    t.cur_nimg = 10 ** 6                                             # the top level
    metric_tracker.TrainingMetrics(t).run(None, 0.0, lambda m: None)
    assert seen == [t.classes] and t.classes.implicit and t.classes.freqs != ClassPrior.uniform(3).freqs


def test_metrics_score_what_generate_writes(clustered):
    from pggan.metrics.evaluate import image_sources

    gen = load_generator(clustered)
    fake_fn, _ = image_sources(gen, np.zeros((4, 3, 16, 16), np.uint8), 0)
    got = fake_fn([0, 1, 2]).permute(0, 2, 3, 1).numpy().astype(np.uint8)
    assert np.array_equal(got, gen.generate(seeds=[0, 1, 2]).images)


def test_onnx_of_a_clustered_network_draws_its_class_in_the_graph(clustered, tmp_path):
    pytest.importorskip("onnxruntime")
    from pggan.export import DrawnClasses, export_onnx

    gen = load_generator(clustered)
    r = export_onnx(gen, str(tmp_path), 16)
    assert r["max_abs_diff"] < 1e-4
    import onnx
    model = onnx.load(r["path"])
    assert [i.name for i in model.graph.input] == ["z", "class_u"]
    assert json.loads({p.key: p.value for p in model.metadata_props}["pggan.classes"])["source"] == "clusters"
    seeds = list(range(8))
    from pggan.api import latents_for_seeds
    drawn = DrawnClasses(gen.G, 4, 1.0, gen.classes.cumulative())(
        latents_for_seeds(seeds, 16), torch.from_numpy(class_uniforms(seeds)).float())
    assert torch.allclose(drawn, gen.generate(seeds=seeds).tensor, atol=1e-6)


def test_grids_of_a_clustered_run_draw_from_the_prior_and_labelled_runs_show_classes_in_turn():
    from pggan.training.trainer import grid_latents

    cfg = TrainConfig(net=NetworkConfig(resolution=8, latent_size=8, label_size=4), grid_size=32)
    _, onehot = grid_latents(cfg, PRIOR)
    drawn = onehot.argmax(1).numpy()
    assert _chi2(drawn, PRIOR.freqs) < 16.27 and _chi2(drawn, [0.25] * 4) > 100
    _, onehot = grid_latents(cfg, ClassPrior(PRIOR.freqs, "labels"))               # the user's classes: each in turn
    assert onehot.argmax(1).numpy().tolist()[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
