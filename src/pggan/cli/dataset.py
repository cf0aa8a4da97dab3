"""``pggan dataset create | info | show | verify``: multi-resolution datasets."""
from __future__ import annotations

import os

import click

from .app import friendly_errors, main, mib


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
@click.option("--small", default="skip", show_default=True, type=click.Choice(["skip", "upscale"]),
              help="images below the resolution")
@click.option("--background", default="255,255,255", show_default=True, help="R,G,B behind transparency and padding")
@click.option("--labels", type=click.Choice(["none", "folders"]), default="none", show_default=True,
              help="class labels from sub-folder names")
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
@click.option("--progress/--no-progress", default=None,
              help="a progress bar (default: only when stderr is a terminal; a redirected log gets none)")
@friendly_errors(interrupted="nothing was written (the partial dataset was removed)")
def dataset_create(source, dest, resolution, kind, channels, square, small, background, labels, labels_file, landmarks,
                   max_count, count, shuffle_seed, max_bad_fraction, workers, max_memory_mb, compress_from, overwrite,
                   progress):
    """Convert SOURCE (images, an archive, MNIST, CIFAR, LSUN, CelebA or builtin:NAME) into DEST."""
    from ..data.create import ConvertOptions, create_dataset
    from ..data.sources import open_source

    try:
        bg = tuple(int(v) for v in background.split(","))
        assert len(bg) == 3 and all(0 <= v <= 255 for v in bg)
    except (ValueError, AssertionError):
        raise click.ClickException(f"--background must be R,G,B with values 0..255, got '{background}'") from None
    if max_count is not None and max_count < 1:
        raise click.ClickException("--max-count must be >= 1")
    opts = ConvertOptions(resolution=resolution, channels=channels, square=square, small=small, background=bg,
                          max_count=max_count, shuffle_seed=shuffle_seed, max_bad_fraction=max_bad_fraction,
                          workers=workers, max_memory_mb=max_memory_mb, compress_from=compress_from).validate()
    src = open_source(source, kind, labels=None if labels == "none" else labels, labels_file=labels_file,
                      landmarks=landmarks, count=count, resolution=resolution, channels=channels)
    header = create_dataset(src, dest, opts, overwrite=overwrite, progress=progress, echo=click.echo)
    skipped = sum(1 for _ in open(os.path.join(dest, "report.txt")))
    size = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
    click.echo(f"wrote {dest}: {header['count']} images at {resolution}x{resolution}, {mib(size)}"
               + (f", {skipped} skipped (see {os.path.join(dest, 'report.txt')})" if skipped else ""))


@dataset.command("info")
@click.argument("path", type=click.Path())
@friendly_errors
def dataset_info(path):
    """Count, levels, channels, labels and size on disk."""
    from ..data.dataset import level_file, png_files, read_header

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
        click.echo(f"  level {r:>4}x{r:<4} {mib(n):>12}" + ("  (PNG)" if compressed else ""))
    click.echo(f"  total          {mib(total):>12}")


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

    from ..data.dataset import open_dataset
    from ..util.grids import make_grid, sample_indices, save_png

    ds = open_dataset(path)
    level = level or ds.resolution
    if level not in ds.levels:
        raise click.ClickException(f"level {level} is not in this dataset; levels: {', '.join(map(str, sorted(ds.levels)))}")
    idx = sample_indices(len(ds), count, seed)
    images = np.asarray(ds.levels[level][idx]).transpose(0, 2, 3, 1)
    save_png(out, make_grid(images, max(1, int(round(len(idx) ** 0.5))), size=max(level, 64)))
    click.echo(f"wrote {out}")


@dataset.command("verify")
@click.argument("path", type=click.Path())
@click.option("--deep", is_flag=True, help="also check every level is the box average of the one above")
@friendly_errors
def dataset_verify(path, deep):
    """Check the checksums (and with --deep the levels) of a dataset."""
    from ..data.dataset import verify_dataset

    problems = verify_dataset(path, deep=deep)
    if problems:
        for p in problems:
            click.echo(p, err=True)
        raise click.ClickException(f"{path}: {len(problems)} problem(s) found")
    click.echo(f"{path}: OK")
