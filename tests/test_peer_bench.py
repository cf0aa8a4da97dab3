"""tools/peer_bench.py against a stand-in for pro-gan-pth with its API and its two faults on PyTorch 2
(its modules import torchvision and tensorboard; its transposed convolution calls ``_output_padding``
the PyTorch 1.10 way), so the harness is tested without the package."""
import importlib.util
import pathlib
import sys
import textwrap

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "peer_bench", pathlib.Path(__file__).resolve().parents[1] / "tools" / "peer_bench.py")
peer_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer_bench)

FAKE = {
    "__init__.py": "",
    "custom_layers.py": """
        import torch
        from torch.nn import ConvTranspose2d

        class EqualizedConvTranspose2d(ConvTranspose2d):
            def forward(self, x, output_size=None):
                pad = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size)
                return torch.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, pad)

        def update_average(tgt, src, beta):
            with torch.no_grad():
                for a, b in zip(tgt.parameters(), src.parameters()):
                    a.copy_(beta * a + (1 - beta) * b)
        """,
    "networks.py": """
        import torch
        from torchvision.transforms import Compose, ToTensor
        from .custom_layers import EqualizedConvTranspose2d

        DEFAULT_TRANSFORM = Compose([ToTensor()])          # built at import, as the real package does

        def nf(stage, fmap_base=16 << 10, fmap_max=512):
            return min(fmap_base >> stage, fmap_max)

        class Generator(torch.nn.Module):
            def __init__(self, depth=10, latent_size=512):
                super().__init__()
                self.depth, self.latent_size = depth, latent_size
                self.first = EqualizedConvTranspose2d(latent_size, nf(1), 4)
                self.rgb = torch.nn.Conv2d(nf(1), 3, 1)

            def forward(self, z, depth, alpha):
                y = self.rgb(self.first(z.reshape(len(z), -1, 1, 1)))
                return torch.nn.functional.interpolate(y, scale_factor=2 ** (depth - 2))

        class Discriminator(torch.nn.Module):
            def __init__(self, depth=7, latent_size=512):
                super().__init__()
                self.depth, self.conv = depth, torch.nn.Conv2d(3, 1, 3, padding=1)

            def forward(self, x, depth, alpha):
                return self.conv(x).mean(dim=(1, 2, 3))
        """,
    "losses.py": """
        class WganGP:
            def dis_loss(self, dis, reals, fakes, depth, alpha):
                return dis(fakes, depth, alpha).mean() - dis(reals, depth, alpha).mean()

            def gen_loss(self, dis, reals, fakes, depth, alpha):
                return -dis(fakes, depth, alpha).mean()
        """,
    "gan.py": """
        import copy
        from torch.utils.tensorboard import SummaryWriter
        from torchvision.utils import save_image

        STEPS = []

        class ProGAN:
            def __init__(self, gen, dis, device=None, ema_beta=0.999):
                print("Generator Network:", gen)
                self.gen, self.dis, self.ema_beta = gen.to(device), dis.to(device), ema_beta
                self.latent_size, self.gen_shadow = gen.latent_size, copy.deepcopy(gen)

            def _opt(self, optim, loss):
                optim.zero_grad()
                loss.backward()
                optim.step()
                return loss.item()

            def optimize_discriminator(self, loss, optim, z, reals, depth, alpha):
                STEPS.append(("D", depth, reals.shape, self.gen.first.out_channels))
                reals = reals[..., :2 ** depth, :2 ** depth]         # (the real one downsamples)
                return self._opt(optim, loss.dis_loss(self.dis, reals, self.gen(z, depth, alpha).detach(), depth, alpha))

            def optimize_generator(self, loss, optim, z, reals, depth, alpha):
                STEPS.append(("G", depth))
                return self._opt(optim, loss.gen_loss(self.dis, reals, self.gen(z, depth, alpha), depth, alpha))
        """,
}


@pytest.fixture
def own_imports():
    before, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before:            # the stand-ins and stubs go with the test
        if name.startswith(("pro_gan_pytorch", "torchvision", "torch.utils.tensorboard")):
            del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def fake_peer(tmp_path, own_imports):
    pkg = tmp_path / "pro_gan_pytorch"
    pkg.mkdir()
    for name, text in FAKE.items():
        (pkg / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_peer_bench_times_the_peers_step_beside_ours(fake_peer, capsys):
    peer = peer_bench.import_peer(str(fake_peer))
    gan = sys.modules["pro_gan_pytorch.gan"]
    lines = []
    (row,) = peer_bench.compare(peer, torch.device("cpu"), [4], 0.01, log=lines.append)
    # every timed iteration is the peer's D step then its G step, at the level and minibatch of ours
    assert gan.STEPS[:2] == [("D", 2, torch.Size([16, 3, 4, 4]), 512), ("G", 2)] and len(gan.STEPS) >= 2 * 5
    assert row["batch"] == 16 and row["peer_img_per_s"] > 0 and row["img_per_s"] > 0
    assert row["graph_img_per_s"] is None                         # no CUDA graphs on a CPU
    assert row["speedup"] == pytest.approx(row["img_per_s"] / row["peer_img_per_s"])
    assert lines == [peer_bench.format_row(row)] and lines[0].endswith("x")
    assert "Generator Network" not in capsys.readouterr().out     # its printout of the networks is held back


def test_peer_bench_reference_network_caps_the_peers_maps(fake_peer):
    """--network reference: the peer's maps capped at the reference network's 128, its latent 128, its
    reals at the network's 32x32 (it downsamples them to the level itself), batch 16 as ours."""
    peer = peer_bench.import_peer(str(fake_peer))
    gan = sys.modules["pro_gan_pytorch.gan"]
    (row,) = peer_bench.compare(peer, torch.device("cpu"), [4], 0.01, "reference", log=lambda m: None)
    assert gan.STEPS[0] == ("D", 2, torch.Size([16, 3, 32, 32]), 128) and row["network"] == "reference"
    assert row["batch"] == 16 and row["img_per_s"] > 0


def test_peer_bench_names_a_folder_without_the_package(tmp_path, own_imports):
    with pytest.raises(SystemExit, match="no pro-gan-pth there"):
        peer_bench.import_peer(str(tmp_path))


@pytest.mark.parametrize("native", (True, False))
def test_peer_bench_precision_auto_is_what_train_picks(fake_peer, monkeypatch, capsys, native):
    """--precision auto: pggan's side in the precision pggan train picks on the device (bf16 on a CPU with
    native bf16, else fp32); the peer stays in fp32."""
    import pggan.util.device as device_util

    monkeypatch.setattr(device_util, "cpu_has_native_bf16", lambda: native)
    seen = []

    def steps(cfg, device, resolutions, seconds, fades=True):
        seen.append(cfg.precision)
        yield {"img_per_s": 100.0}

    monkeypatch.setattr(peer_bench, "iter_steps", steps)
    peer_bench.main(["--peer", str(fake_peer), "--device", "cpu", "--network", "reference", "--precision", "auto",
                     "--resolutions", "4", "--seconds", "0.01"])
    want = "bf16" if native else "fp32"
    assert seen == [want]
    assert f"pro-gan-pth (fp32) against pggan ({want}, auto:" in capsys.readouterr().out
