"""Labels from k-means clusters of the images (clusters=K): the groups found, their order, the run they condition."""
import json

import numpy as np
import pytest
from test_training import tiny_config

from pggan.api import load_generator
from pggan.checkpoint import list_checkpoints
from pggan.data.base import DataError, ImageSet
from pggan.data.clusters import cluster_labels, kmeans, with_clusters
from pggan.training.run import run_training as train


def coloured_set(sizes, seed=0) -> tuple[ImageSet, np.ndarray]:
    """Images of one flat colour per group plus noise, shuffled; (the set, each image's group)."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 30, 30], [30, 200, 40], [40, 40, 210], [240, 240, 240]])[: len(sizes)]
    group = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    img = colours[group][:, :, None, None] + rng.normal(0, 12, (len(group), 3, 16, 16))
    return ImageSet.from_full(np.clip(img, 0, 255).astype(np.uint8)), group


def test_clusters_recover_the_groups_numbered_by_size():
    images, group = coloured_set([12, 50, 30])
    labels = cluster_labels(images, 3, seed=0)
    # one label per group and one group per label; the largest group (50, group 1) is cluster 0
    pairs = set(zip(group.tolist(), labels.tolist()))
    assert pairs == {(1, 0), (2, 1), (0, 2)}
    assert np.array_equal(labels, cluster_labels(images, 3, seed=0))          # a pure function of its inputs


def test_more_clusters_than_groups_splits_groups_and_leaves_none_empty():
    images, group = coloured_set([20, 20])
    labels = cluster_labels(images, 5, seed=3)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]
    for c in range(5):                                                       # no cluster mixes the two colours
        assert len(set(group[labels == c].tolist())) == 1


def test_kmeans_reseeds_an_emptied_cluster():
    x = np.array([[0.0], [0.0], [0.0], [10.0]], dtype=np.float32)
    centres = kmeans(x, 2, seed=0)
    assert sorted(centres[:, 0].tolist()) == [0.0, 10.0]


def test_an_outlier_does_not_keep_a_cluster_of_its_own():
    # k-means++ draws a far outlier as a seed almost surely; left alone it keeps a cluster of one while
    # two of the three groups share one cluster
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(3), 60)
    x = np.concatenate([groups[:, None] * 4.0 + rng.normal(0, 0.3, (180, 2)), [[100.0, 100.0]]]).astype(np.float32)
    for seed in range(5):
        centres = kmeans(x, 3, seed=seed)
        labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        assert np.bincount(labels, minlength=3).min() >= 7          # a tenth of the mean size, rounded up
        assert all(len(set(labels[:180][groups == g].tolist())) == 1 for g in range(3))
        assert len(set(labels[:180].tolist())) == 3


def test_too_many_clusters_is_one_clear_error():
    images, _ = coloured_set([3, 3])
    with pytest.raises(DataError, match="no more than the 6 images"):
        cluster_labels(images, 7, seed=0)


def test_with_clusters_labels_the_set_and_says_so():
    images, _ = coloured_set([10, 6])
    out = with_clusters(images, 2, seed=0)
    assert out.label_size == 2 and np.bincount(out.labels).tolist() == [10, 6]
    assert "2 clusters of 6-10 images" in out.description
    assert out.levels is images.levels


def test_a_run_with_clusters_trains_a_generator_conditional_on_them(tmp_path):
    cfg = tiny_config(tmp_path, clusters=3)
    cfg.sched.total_kimg = 0.1
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    G = load_generator(list_checkpoints(run)[-1])
    assert G.net.label_size == 3
    assert not np.array_equal(G.generate(seeds=[4], labels=[0]).images, G.generate(seeds=[4], labels=[1]).images)
    saved = json.load(open(f"{run}/training_options.json"))["config"]
    assert saved["clusters"] == 3 and saved["net"]["label_size"] == 3


def test_grid_labels_reach_the_networks_device(tmp_path):
    """The grid's one-hot labels are made on the CPU; sample() moved only z to the device, so every
    conditional run on CUDA stopped at its first grid (found on an H200). Here a stand-in for a tensor on
    another device, usable only through .to(device)."""
    import torch

    from pggan.training.plan import run_data
    from pggan.training.trainer import Trainer, grid_latents

    cfg, images = run_data(tiny_config(tmp_path, clusters=2))
    trainer = Trainer(cfg, images, torch.device("cpu"))
    z, labels = grid_latents(cfg, trainer.classes)

    class Elsewhere:
        def to(self, target):
            if not isinstance(target, torch.device):
                raise RuntimeError("a tensor on another device: move it to the network's first")
            return labels.to(target)

    assert np.array_equal(trainer.sample(z, Elsewhere()), trainer.sample(z, labels))


def test_a_budgeted_run_clusters_its_images_only_on_the_budgets_own_network():
    from pggan.presets import get_preset
    from pggan.training.budget import clusters_for_budget

    cfg = get_preset("cpu-small").replace(budget="25m")
    assert clusters_for_budget(cfg, 3916) == 16                       # budget_clusters
    assert clusters_for_budget(cfg, 950) == 9                         # one cluster per 100 images at most
    assert clusters_for_budget(cfg, 199) == 0                         # too few images for two
    assert clusters_for_budget(cfg.replace(budget_clusters=0), 3916) == 0
    assert clusters_for_budget(cfg.replace(budget=""), 3916) == 0      # only a budgeted run
    assert clusters_for_budget(cfg.replace(init="net.pt"), 3916) == 0          # a fine-tuned network keeps its classes
    assert clusters_for_budget(cfg, 3916, {"net.fmap_max"}) == 0               # a network the user gave
    assert clusters_for_budget(get_preset("celebahq-1024").replace(budget="1h"), 3916) == 0
    # whether the data's labels or the user's clusters decide instead: tests/test_plan.py's label matrix


def test_the_clusters_a_new_run_is_given_are_saved_and_a_resumed_run_keeps_them(tmp_path, monkeypatch):
    from pggan.checkpoint import checkpoint_config, load_checkpoint
    from pggan.training import plan

    monkeypatch.setattr(plan, "clusters_for_budget", lambda cfg, n, given: 3)    # as a --budget run would be given
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.1
    lines = []
    run = train(cfg, progress=False, echo=lines.append).run_dir
    assert any("conditioned on 3 clusters" in line for line in lines)
    saved = json.load(open(f"{run}/training_options.json"))["config"]
    assert saved["clusters"] == 3 and saved["net"]["label_size"] == 3
    requested = json.load(open(f"{run}/requested_options.json"))
    assert requested.get("clusters", 0) == 0                                     # what the user asked for
    monkeypatch.setattr(plan, "clusters_for_budget", lambda cfg, n, given: 0)    # only new runs are given clusters
    ckpt = list_checkpoints(run)[-1]
    resumed = load_checkpoint(ckpt)
    assert json.loads(resumed["config"])["clusters"] == 3
    cfg2 = checkpoint_config(resumed)                                            # as --resume builds it
    cfg2.sched.total_kimg = 0.2
    train(cfg2, resume=ckpt, progress=False, echo=lambda m: None)
    assert load_generator(list_checkpoints(run)[-1]).net.label_size == 3
