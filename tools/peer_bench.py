"""pro-gan-pth's training step against pggan's, on the same device in one process: the peer's figure.

pro-gan-pth (PyPI, akanimax) is not a dependency and none of it is in this repository: ``make peer``
puts its source in peer/, ignored by git (and carried to a GPU machine as it is); then

    python tools/peer_bench.py --peer peer [--device cuda] [--precision auto] [--resolutions 4,8,16,32] [--json out.json]

Both sides train with the same global settings (on CUDA TF32 and cuDNN's autotuner, as ``pggan bench``
sets them); pro-gan-pth in fp32, the only precision it has, pggan in ``--precision`` (fp32 by default;
``auto`` is what ``pggan train`` picks on the device: bf16 where it is native). They train either the
paper's widths (``--network paper``: pro-gan-pth's are the paper's up to 32x32, 512 maps; it keeps 512
at 64x64, where the paper has 256) at
``pggan.bench.paper_batch``'s minibatch, or the reference network of ``pggan bench`` (``--network
reference``: 32x32, 128 maps, latent 128, batch 16; pro-gan-pth's map counts capped at 128, its reals
at 32x32 downsampled to each level by its own code, as its training loop feeds them). The peer's step is
one iteration of its own training loop (``ProGAN.train``): ``optimize_discriminator`` (WGAN-GP with
drift), ``update_average`` (its EMA) and ``optimize_generator``, in a stabilise phase (alpha = 1), on
one device as its users run it (on CUDA it wraps both networks in DataParallel). pggan's step is
``pggan bench``'s (eager and, on CUDA, replayed as CUDA graphs).
"""
import argparse
import contextlib
import functools
import inspect
import io
import json
import sys
import types

import torch

from pggan.bench import iter_steps, paper_batch, paper_config, reference_config
from pggan.util.device import configure_cuda, resolve_device, resolve_precision, synchronize
from pggan.util.timing import timeit


def _stub(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


class _Unavailable:
    """Stands in for an image transform, grid writer or summary writer: it may be built (the peer builds
    a default transform at import), never used."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError("not available inside tools/peer_bench.py (a training step never needs it)")


def import_peer(path: str):
    """pro-gan-pth's package from ``path``. Its modules import torchvision and tensorboard for image
    grids, data loading and logging, which a training step never calls: where they do not import
    (torchvision's PyPI build breaks beside a CPU torch), they are replaced by stand-ins."""
    sys.path.insert(0, path)
    try:
        import torchvision.transforms  # noqa: F401
        import torchvision.utils  # noqa: F401
    except (ImportError, RuntimeError):         # RuntimeError: "operator torchvision::nms does not exist"
        _stub("torchvision")
        _stub("torchvision.utils", save_image=_Unavailable())
        _stub("torchvision.transforms", **{n: _Unavailable for n in ("Compose", "RandomHorizontalFlip", "Resize",
                                                                         "ToTensor")})
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        _stub("torch.utils.tensorboard", SummaryWriter=_Unavailable)
    try:
        from pro_gan_pytorch import custom_layers, gan, losses, networks
    except ImportError as e:
        raise SystemExit(f"--peer {path}: no pro-gan-pth there ({e}); `make peer` puts it in peer/") from None
    _compat(custom_layers)
    return types.SimpleNamespace(ProGAN=gan.ProGAN, Generator=networks.Generator, Discriminator=networks.Discriminator,
                                 WganGP=losses.WganGP, update_average=custom_layers.update_average, networks=networks)


def _compat(custom_layers) -> None:
    """pro-gan-pth 3.4 was written for PyTorch 1.10: its transposed convolution calls
    ``_output_padding`` without the ``num_spatial_dims`` that PyTorch 2 requires (a TypeError at G's
    first layer). Given the missing argument, the layer computes what it computed there."""
    base = torch.nn.ConvTranspose2d._output_padding
    if "num_spatial_dims" not in inspect.signature(base).parameters:
        return

    def output_padding(self, input, output_size, stride, padding, kernel_size, num_spatial_dims=2, dilation=None):
        return base(self, input, output_size, stride, padding, kernel_size, num_spatial_dims, dilation)
    custom_layers.EqualizedConvTranspose2d._output_padding = output_padding


def peer_step(peer, res: int, batch: int, device: torch.device, net_res: int | None = None, latent: int = 512):
    """One training iteration of pro-gan-pth at level ``res`` of a network that ends at ``net_res`` (default
    ``res``), finished when it returns."""
    depth, net_depth = res.bit_length() - 1, (net_res or res).bit_length() - 1
    with contextlib.redirect_stdout(io.StringIO()):          # it prints both networks
        pg = peer.ProGAN(peer.Generator(depth=net_depth, latent_size=latent),
                         peer.Discriminator(depth=net_depth, latent_size=latent), device=device)
    # its train()'s Adam, but for betas=(0, 0.99), which PyTorch 2 refuses ("both floats or both Tensors")
    adam = dict(lr=0.003, betas=(0.0, 0.99), eps=1e-8)
    gen_optim, dis_optim = torch.optim.Adam(pg.gen.parameters(), **adam), torch.optim.Adam(pg.dis.parameters(), **adam)
    loss = peer.WganGP()
    reals = torch.randn(batch, 3, 2 ** net_depth, 2 ** net_depth, device=device).clamp(-1, 1)

    def step():
        z = torch.randn(batch, pg.latent_size, device=device)
        pg.optimize_discriminator(loss, dis_optim, z, reals, depth, 1.0)
        peer.update_average(pg.gen_shadow, pg.gen, beta=pg.ema_beta)
        pg.optimize_generator(loss, gen_optim, z, reals, depth, 1.0)
        synchronize(device)
    return step


def compare(peer, device: torch.device, resolutions, seconds: float, network: str = "paper", log=print,
            precision: str = "fp32") -> list[dict]:
    """One row per resolution: both steps' images/s (ours eager and, on CUDA, as graphs, in ``precision``)
    and the ratio."""
    if network == "reference":
        ref = reference_config(precision)
        peer.networks.nf = functools.partial(peer.networks.nf, fmap_max=ref.net.fmap_max)
    rows = []
    for res in resolutions:
        if network == "reference":
            cfg, batch = ref, ref.sched.batch_base
            step = peer_step(peer, res, batch, device, ref.net.resolution, ref.net.latent_size)
        else:
            batch = paper_batch(res, device)
            cfg, step = paper_config(precision, res, batch), peer_step(peer, res, batch, device)
        peer_dt, _ = timeit(step, seconds, warmup=2)
        ours = next(iter_steps(cfg, device, [res], seconds, fades=False))
        row = {"network": network, "precision": precision, "resolution": res, "batch": batch,
               "peer_img_per_s": batch / peer_dt,
               "img_per_s": ours["img_per_s"], "graph_img_per_s": ours.get("graph_img_per_s")}
        row["speedup"] = max(row["img_per_s"], row["graph_img_per_s"] or 0) / row["peer_img_per_s"]
        rows.append(row)
        log(format_row(row))
    return rows


HEADER = f"{'res':>5}{'batch':>7}{'pro-gan-pth img/s':>19}{'pggan img/s':>13}{'pggan graphs img/s':>20}{'pggan / peer':>14}"


def format_row(r: dict) -> str:
    graphs = f"{r['graph_img_per_s']:.1f}" if r["graph_img_per_s"] else "-"
    return (f"{r['resolution']:>5}{r['batch']:>7}{r['peer_img_per_s']:>19.1f}{r['img_per_s']:>13.1f}{graphs:>20}"
            f"{r['speedup']:>13.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", required=True, help="folder holding pro-gan-pth's pro_gan_pytorch package")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--network", choices=("paper", "reference"), default="paper")
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                    help="pggan's (the peer trains in fp32); auto: as pggan train picks on the device")
    ap.add_argument("--resolutions", default="4,8,16,32")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    peer = import_peer(args.peer)
    device = resolve_device(args.device)
    cuda = configure_cuda(device)
    precision, why = resolve_precision(args.precision, device)
    print(f"pro-gan-pth (fp32) against pggan ({precision}, {why}) on {device}, the {args.network} network; "
          f"{cuda or 'no CUDA settings'}")
    print(HEADER)
    rows = compare(peer, device, [int(r) for r in args.resolutions.split(",")], args.seconds, args.network,
                   precision=precision)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
