"""The ``pggan`` command."""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from .config import ConfigError, TrainConfig, options_markdown, set_option, validate


def friendly_errors(fn):
    """Turn the errors users can cause into one clear line and a non-zero exit, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .data.images import DataError
        from .training.checkpoint import CheckpointError
        try:
            return fn(*args, **kwargs)
        except (ConfigError, DataError, CheckpointError, ValueError, RuntimeError, OSError) as e:
            if os.environ.get("PGGAN_DEBUG"):          # the full traceback, for bug reports
                raise
            raise click.ClickException(str(e)) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pggan")
def main():
    """Progressive Growing of GANs: train, generate, benchmark."""


def build_config(preset, config_file, sets, **flags) -> TrainConfig:
    from .presets import get_preset
    cfg = get_preset(preset) if preset else TrainConfig(preset="")
    if preset is None and config_file is None:
        cfg = get_preset("cpu-small")
    if config_file:
        try:
            with open(config_file) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file '{config_file}' is not valid JSON: {e}") from None
        base = cfg.to_dict()
        _deep_update(base, d)
        cfg = TrainConfig.from_dict(base)
    return validate(apply_overrides(cfg, flags, sets))


def apply_overrides(cfg: TrainConfig, flags: dict, sets) -> TrainConfig:
    """Command-line flags ({dotted option: value}) and --set KEY=VALUE items, in that order."""
    for key, value in flags.items():
        if value is not None:
            cfg = set_option(cfg, key, value)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sched.total_kimg=200), got '{item}'")
        key, value = item.split("=", 1)
        cfg = set_option(cfg, key.strip(), value.strip())
    return cfg


def _relaunch_with_torchrun(nproc: int) -> int:
    """``pggan train --nproc N ...`` = ``torchrun --standalone --nproc_per_node N -m pggan train ...``."""
    import subprocess

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "pggan"] + args
    return subprocess.call(cmd)


def _deep_update(base: dict, new: dict, prefix: str = "") -> None:
    for k, v in new.items():
        if k not in base:
            raise ConfigError(f"config file: unknown option '{prefix}{k}'")
        if isinstance(base[k], dict) and isinstance(v, dict) and k not in ("widths",) and not k.endswith(("_table", "_cap")):
            _deep_update(base[k], v, f"{prefix}{k}.")
        else:
            base[k] = v


@main.command()
@click.option("--preset", help="start from a named configuration (default: cpu-small)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON file of options over the preset")
@click.option("--data", help="builtin:shapes or a folder of images")
@click.option("--resolution", "net__resolution", type=int, help="target resolution")
@click.option("--kimg", "sched__total_kimg", type=float, help="length of the run in kimg")
@click.option("--loss", "loss__kind", type=click.Choice(["wgangp", "lsgan", "logistic"]))
@click.option("--device", help="auto, cpu, cuda, cuda:N, mps")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]))
@click.option("--seed", type=int)
@click.option("--mirror/--no-mirror", default=None, help="horizontal mirror augmentation")
@click.option("--outdir", help="parent of the run directories (default runs)")
@click.option("--desc", help="extra text in the run directory name")
@click.option("--deterministic", is_flag=True, default=None, help="deterministic kernels (exact resume)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="any option, e.g. --set sched.lod_training_kimg=50")
@click.option("--resume", help="'latest' (newest checkpoint under --outdir) or a checkpoint path")
@click.option("--dry-run", is_flag=True, help="print the resolved config and exit")
@click.option("--help-options", is_flag=True, help="list every option with its default and exit")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="processes on this machine (one per GPU; gloo on CPU), started through torchrun")
@click.option("--progress/--no-progress", default=True)
@friendly_errors
def train(preset, config_file, sets, resume, dry_run, help_options, nproc, progress, **flags):
    """Train a progressive GAN; writes runs/NNNNN-<desc>/."""
    if help_options:
        click.echo(options_markdown())
        return
    if nproc < 1:
        raise click.ClickException("--nproc must be >= 1")
    if nproc > 1 and "WORLD_SIZE" not in os.environ and not dry_run:
        sys.exit(_relaunch_with_torchrun(nproc))
    from .training.checkpoint import checkpoint_config, load_checkpoint
    from .training.run import find_latest_checkpoint, train as run_training

    flags = {k.replace("__", "."): v for k, v in flags.items() if v is not None}
    if resume:
        if resume == "latest":
            outdir = flags.get("outdir", "runs")
            path = find_latest_checkpoint(outdir)
            if path is None:
                raise click.ClickException(f"--resume latest: no checkpoint found under '{outdir}'")
            resume = path
        base = checkpoint_config(load_checkpoint(resume))
        if preset or config_file:
            raise click.ClickException("--resume continues the checkpoint's own config; drop --preset/--config "
                                       "(use --kimg or --set to change how long or where it runs)")
        cfg = validate(apply_overrides(base, flags, sets))
        if cfg.net != base.net:
            raise click.ClickException("the network options differ from the checkpoint's; a run cannot change its "
                                       "networks when resuming")
    else:
        cfg = build_config(preset, config_file, sets, **flags)
    if dry_run:
        click.echo(cfg.to_json())
        return
    result = run_training(cfg, resume=resume, progress=progress)
    code = (130 if result["signal"] == 2 else 143 if result["signal"] == 15 else 1) if result["interrupted"] else 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .training.dist import exit_now
        exit_now(code)                 # skip the interpreter teardown that gloo's threads can abort
    if code:
        sys.exit(code)


@main.command()
@click.option("--network", required=True, type=click.Path(), help="checkpoint (.pt) or generator (.safetensors)")
@click.option("--seeds", default="0-7", show_default=True, help="e.g. 0-99,200")
@click.option("--outdir", default="out", show_default=True, type=click.Path(file_okay=False))
@click.option("--grid", is_flag=True, help="write one grid image instead of one file per seed")
@click.option("--truncate", type=float, default=None, help="redraw latent components beyond +-T")
@click.option("--class", "class_idx", type=int, default=None, help="class index for a conditional generator")
@click.option("--raw", is_flag=True, help="use G instead of G_ema (checkpoints only)")
@click.option("--device", default="cpu", show_default=True)
@friendly_errors
def generate(network, seeds, outdir, grid, truncate, class_idx, raw, device):
    """Generate images from a trained generator."""
    from .api import load_generator, parse_seeds
    from .training.images import make_grid, save_png
    from .training.loop import resolve_device

    seed_list = parse_seeds(seeds)
    if truncate is not None and truncate <= 0:
        raise click.ClickException("--truncate must be > 0")
    gen = load_generator(network, device=resolve_device(device), use_ema=not raw)
    labels = gen.class_labels(class_idx, len(seed_list))
    os.makedirs(outdir, exist_ok=True)
    out = gen.generate(seeds=seed_list, labels=labels, truncate=truncate)
    if gen.resolution < gen.net.resolution:
        click.echo(f"note: {network} was saved while its run trained at {gen.resolution}x{gen.resolution} "
                   f"(of {gen.net.resolution}x{gen.net.resolution}); the images have that size")
    if grid:
        cols = max(1, int(round(len(seed_list) ** 0.5)))
        path = os.path.join(outdir, f"grid-seeds{seed_list[0]}-{seed_list[-1]}.png")
        save_png(path, make_grid(out.images, cols))
        click.echo(f"wrote {path}")
    else:
        for s, img in zip(seed_list, out.images):
            save_png(os.path.join(outdir, f"seed{s:04d}.png"), img)
        click.echo(f"wrote {len(seed_list)} images to {outdir}/")


@main.command()
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", "precisions", default="fp32,bf16", show_default=True, help="comma-separated: fp32,bf16,fp16")
@click.option("--paper-max-res", default=16, show_default=True, help="measure the paper's widths up to this resolution (0 = skip; 32 and above take minutes on a CPU)")
@click.option("--seconds", default=3.0, show_default=True, help="time per measurement")
@click.option("--resolutions", default="4,8,16,32", show_default=True, help="reference network resolutions to measure")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write the results as JSON")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile G and D (as train's compile option)")
@friendly_errors
def bench(device, precisions, paper_max_res, seconds, resolutions, json_path, use_compile):
    """Measure training speed against this machine's convolution peak."""
    from .bench import HEADER, run_bench, write_json
    from .training.loop import resolve_device

    precs = [p.strip() for p in precisions.split(",") if p.strip()]
    bad = [p for p in precs if p not in ("fp32", "bf16", "fp16")]
    if bad:
        raise click.ClickException(f"unknown precision {bad[0]}; use fp32, bf16 or fp16")
    dev = resolve_device(device)
    header_shown = []

    def log(msg: str) -> None:
        if msg.startswith(("reference", "paper")) and not header_shown:
            header_shown.append(True)
            click.echo(HEADER)
        click.echo(msg)

    try:
        res_list = [int(r) for r in resolutions.split(",") if r.strip()]
    except ValueError:
        raise click.ClickException(f"--resolutions must be a comma-separated list such as 4,8,16,32, got '{resolutions}'") from None
    if not res_list or any(r not in (4, 8, 16, 32) for r in res_list):
        raise click.ClickException("--resolutions: the reference network is 32x32, so choose from 4, 8, 16, 32")
    result = run_bench(dev, precs, paper_max_res, seconds, res_list, log=log, compile=use_compile)
    if json_path:
        write_json(json_path, result)
        click.echo(f"wrote {json_path}")


@main.command()
@click.option("--network", required=True, type=click.Path(), help="checkpoint (.pt) or generator (.safetensors)")
@click.option("--data", required=True, help="the training data: a dataset, a folder or builtin:NAME")
@click.option("--metrics", "names", default="swd,msssim", show_default=True, help="comma-separated: swd, msssim, fid, is")
@click.option("--num", default=2048, show_default=True, help="generated (and real) images for SWD, FID, IS (the paper: 16384)")
@click.option("--pairs", default=10000, show_default=True, help="MS-SSIM: pairs of generated images")
@click.option("--seed", default=0, show_default=True)
@click.option("--inception", type=click.Path(dir_okay=False), help="FID/IS: Inception weights (pt_inception-2015-12-05-6726825d.pth)")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="where real-image statistics are cached")
@click.option("--batch", default=64, show_default=True)
@click.option("--real-baseline", is_flag=True, help="MS-SSIM: also measure pairs of real images (the paper's baseline)")
@click.option("--device", default="cpu", show_default=True)
@friendly_errors
def metrics(network, data, names, num, pairs, seed, inception, cache_dir, batch, real_baseline, device):
    """SWD (x1e3 per level), MS-SSIM, FID and Inception Score of a generator."""
    from .metrics.evaluate import MetricOptions, append_results, evaluate_network, format_result
    from .training.loop import resolve_device

    from tqdm import tqdm

    opts = MetricOptions(names, num, pairs, seed, batch, inception, cache_dir).validate()
    total = (num if {"swd", "fid", "is"} & set(opts.names) else 0) + (2 * pairs if "msssim" in opts.names else 0)
    with tqdm(total=total, unit="img", desc="generating", leave=False, dynamic_ncols=True) as bar:
        r = evaluate_network(network, data, opts, resolve_device(device), real_baseline=real_baseline,
                             progress=bar.update)
    for line in format_result(r):
        click.echo(line)
    kimg = None
    if not network.endswith(".safetensors"):
        from .training.checkpoint import load_checkpoint
        kimg = load_checkpoint(network)["cur_nimg"] / 1000.0
    else:
        from .training.checkpoint import read_generator
        kimg = float(read_generator(network)[2].get("kimg", "nan"))
    for path in append_results(os.path.dirname(os.path.abspath(network)), r, kimg, opts.names):
        click.echo(f"appended {path}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="PNG to write (default RUN_DIR/plot.png)")
@friendly_errors
def plot(run_dir, out):
    """Plot a run's losses and metrics against kimg and wall time, resolution changes marked."""
    from .plot import plot_run

    click.echo(f"wrote {plot_run(run_dir, out)}")


@main.group()
def dataset():
    """Make and inspect multi-resolution datasets."""


@dataset.command("create")
@click.argument("source")
@click.argument("dest", type=click.Path())
@click.option("--resolution", required=True, type=int, help="full resolution (power of two, 4..1024)")
@click.option("--format", "kind", default="auto", show_default=True,
              help="auto, folder, archive, mnist, cifar10, cifar100, lsun, celeba, celebahq (builtin:NAME as SOURCE)")
@click.option("--channels", default=3, show_default=True, type=int, help="1 (grayscale) or 3 (RGB)")
@click.option("--square", default="crop", show_default=True, type=click.Choice(["crop", "pad"]), help="non-square images")
@click.option("--small", default="skip", show_default=True, type=click.Choice(["skip", "upscale"]), help="images below the resolution")
@click.option("--background", default="255,255,255", show_default=True, help="R,G,B behind transparency and padding")
@click.option("--labels", type=click.Choice(["none", "folders"]), default="none", show_default=True, help="class labels from sub-folder names")
@click.option("--labels-file", type=click.Path(dir_okay=False), help="CSV of filename,label")
@click.option("--landmarks", type=click.Path(dir_okay=False), help="celebahq: list_landmarks_celeba.txt")
@click.option("--max-count", type=int, help="use at most this many images")
@click.option("--count", type=int, default=10000, show_default=True, help="builtin sources: images to render")
@click.option("--shuffle-seed", type=int, help="choose and order images by this seed (default: source order)")
@click.option("--max-bad-fraction", default=0.5, show_default=True, help="fail if more of the inputs are unusable")
@click.option("--workers", default=0, show_default=True, help="worker processes (0 = all cores)")
@click.option("--max-memory-mb", default=1024, show_default=True, help="memory bound of the conversion")
@click.option("--compress-from", default=0, show_default=True, help="store levels of this resolution and above as PNG (0 = none)")
@click.option("--overwrite", is_flag=True, help="replace DEST if it exists")
@click.option("--progress/--no-progress", default=True)
@friendly_errors
def dataset_create(source, dest, resolution, kind, channels, square, small, background, labels, labels_file, landmarks,
                   max_count, count, shuffle_seed, max_bad_fraction, workers, max_memory_mb, compress_from, overwrite,
                   progress):
    """Convert SOURCE (images, an archive, MNIST, CIFAR, LSUN, CelebA or builtin:NAME) into DEST."""
    from .data.convert import ConvertOptions, create_dataset
    from .data.sources import open_source

    try:
        bg = tuple(int(v) for v in background.split(","))
        assert len(bg) == 3 and all(0 <= v <= 255 for v in bg)
    except (ValueError, AssertionError):
        raise click.ClickException(f"--background must be R,G,B with values 0..255, got '{background}'") from None
    if max_count is not None and max_count < 1:
        raise click.ClickException("--max-count must be >= 1")
    opts = ConvertOptions(resolution=resolution, channels=channels, square=square, small=small, background=bg,
                          max_count=max_count, shuffle_seed=shuffle_seed, max_bad_fraction=max_bad_fraction,
                          workers=workers, max_memory_mb=max_memory_mb).validate()
    src = open_source(source, kind, labels=None if labels == "none" else labels, labels_file=labels_file,
                      landmarks=landmarks, count=count, resolution=resolution)
    if compress_from and (compress_from & (compress_from - 1) or not 4 <= compress_from <= resolution):
        raise click.ClickException(f"--compress-from must be a power of two from 4 to --resolution ({resolution}), or 0")
    header = create_dataset(src, dest, opts, overwrite=overwrite, progress=progress, compress_from=compress_from)
    skipped = sum(1 for _ in open(os.path.join(dest, "report.txt")))
    size = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
    click.echo(f"wrote {dest}: {header['count']} images at {resolution}x{resolution}, {_mb(size)}"
               + (f", {skipped} skipped (see {os.path.join(dest, 'report.txt')})" if skipped else ""))


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n < 2 ** 30 else f"{n / 2 ** 30:.2f} GiB"


@dataset.command("info")
@click.argument("path", type=click.Path())
@friendly_errors
def dataset_info(path):
    """Count, levels, channels, labels and size on disk."""
    from .data.dataset import level_file, png_files, read_header

    h = read_header(path)
    click.echo(f"{path}: {h['count']} images, {h['resolution']}x{h['resolution']}, {h['channels']} channel(s)")
    click.echo(f"source: {h['source']}")
    if h.get("label_size"):
        click.echo(f"labels: {h['label_size']} classes: {', '.join(h['label_names'][:20])}"
                   + (" ..." if h["label_size"] > 20 else ""))
    total = 0
    for r in h["levels"]:
        compressed = r in h.get("compressed_levels", [])
        n = sum(os.path.getsize(os.path.join(path, f)) for f in (png_files(r) if compressed else [level_file(r)]))
        total += n
        click.echo(f"  level {r:>4}x{r:<4} {_mb(n):>12}" + ("  (PNG)" if compressed else ""))
    click.echo(f"  total          {_mb(total):>12}")


@dataset.command("show")
@click.argument("path", type=click.Path())
@click.option("--level", type=int, help="resolution to show (default: full)")
@click.option("--count", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True, help="which images (random by seed)")
@click.option("--out", default="dataset.png", show_default=True, type=click.Path(dir_okay=False))
@friendly_errors
def dataset_show(path, level, count, seed, out):
    """Write a grid of samples at one level to a PNG."""
    import numpy as np

    from .data.dataset import open_dataset
    from .training.images import make_grid, save_png

    ds = open_dataset(path)
    level = level or ds.resolution
    if level not in ds.levels:
        raise click.ClickException(f"level {level} is not in this dataset; levels: {', '.join(map(str, sorted(ds.levels)))}")
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(count, len(ds)), replace=False))
    images = np.asarray(ds.levels[level][idx]).transpose(0, 2, 3, 1)
    save_png(out, make_grid(images, max(1, int(round(len(idx) ** 0.5))), size=max(level, 64)))
    click.echo(f"wrote {out}")


@dataset.command("verify")
@click.argument("path", type=click.Path())
@click.option("--deep", is_flag=True, help="also check every level is the box average of the one above")
@friendly_errors
def dataset_verify(path, deep):
    """Check the checksums (and with --deep the levels) of a dataset."""
    from .data.dataset import verify_dataset

    problems = verify_dataset(path, deep=deep)
    if problems:
        for p in problems:
            click.echo(p, err=True)
        raise click.ClickException(f"{path}: {len(problems)} problem(s) found")
    click.echo(f"{path}: OK")


from . import cli_generator  # noqa: E402,F401  (registers the generator commands)

if __name__ == "__main__":
    main()
