"""``pggan generate | interpolate | training-video | neighbors | export | convert-official``: trained generators."""
from __future__ import annotations

import os

import click

from .app import DEVICE_OPTION, NETWORK_HELP, friendly_errors, load_network, main, progress_bar

CLASS_HELP = ("class of a conditional generator: K, 'turn' (seed s: class s mod the classes) or 'prior' "
              "(default: each seed draws its class from the training data's shares)")

def _fallback_note(asked: str, written: str) -> None:
    if written != asked:
        click.echo(f"note: imageio-ffmpeg is not installed, so a GIF was written instead of {asked} "
                   f"(pip install 'pggan[video]' for MP4)")


def _parse_grid(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
        assert cols >= 1 and rows >= 1
    except (ValueError, AssertionError):
        raise click.ClickException(f"--grid must look like 2x2 (columns x rows), got '{text}'") from None
    return cols, rows


@main.command()
@click.option("--network", required=True, type=click.Path(), help=NETWORK_HELP)
@click.option("--seeds", default="0-7", show_default=True, help="e.g. 0-99,200")
@click.option("--outdir", default="out", show_default=True, type=click.Path(file_okay=False))
@click.option("--grid", is_flag=True, help="write one grid image instead of one file per seed")
@click.option("--truncate", type=float, default=None, help="redraw latent components beyond +-T")
@click.option("--class", "class_idx", default=None, help=CLASS_HELP)
@click.option("--raw", is_flag=True, help="use G instead of G_ema (checkpoints only; of a run directory, its newest)")
@DEVICE_OPTION
@friendly_errors
def generate(network, seeds, outdir, grid, truncate, class_idx, raw, device):
    """Generate images from a trained generator."""
    from ..api import parse_seeds
    from ..explore import write_images

    seed_list = parse_seeds(seeds)
    if truncate is not None and truncate <= 0:
        raise click.ClickException("--truncate must be > 0")
    gen = load_network(network, device, use_ema=not raw)
    if gen.resolution < gen.net.resolution:
        click.echo(f"note: {network} was saved while its run trained at {gen.resolution}x{gen.resolution} "
                   f"(of {gen.net.resolution}x{gen.net.resolution}); the images have that size")
    with progress_bar(len(seed_list), "img") as bar:
        paths = write_images(gen, seed_list, outdir, grid, class_idx, truncate, progress=bar.update)
    click.echo(f"wrote {paths[0]}" if grid else f"wrote {len(paths)} images to {outdir}/")


@main.command()
@click.option("--network", required=True, type=click.Path(), help=NETWORK_HELP)
@click.option("--out", default="interpolation.mp4", show_default=True, type=click.Path(dir_okay=False),
              help=".mp4 (H.264) or .gif; with --strip a .png")
@click.option("--duration", default=10.0, show_default=True, help="seconds")
@click.option("--fps", default=60.0, show_default=True, help="frames per second (the paper: 60)")
@click.option("--sigma", default=45.0, show_default=True, help="Gaussian smoothing of the latents over time, in frames")
@click.option("--grid", default="1x1", show_default=True, help="streams as columns x rows")
@click.option("--size", type=int, help="height of one stream in pixels (default: the generator's)")
@click.option("--seed", default=0, show_default=True)
@click.option("--strip", help="A,B: a still strip along the great circle between two latents, each a seed or a .npy "
              "latent (a projection's z.npy)")
@click.option("--steps", default=8, show_default=True, help="images in the strip")
@click.option("--class", "class_idx", help=CLASS_HELP + "; a strip's saved latent takes its class.npy")
@DEVICE_OPTION
@friendly_errors
def interpolate(network, out, duration, fps, sigma, grid, size, seed, strip, steps, class_idx, device):
    """Latent-space interpolation video (the paper's), or a still slerp strip between two seeds."""
    from ..explore import interpolation_strip, interpolation_video

    if strip:
        ends = [v.strip() for v in strip.split(",")]
        if len(ends) != 2 or not all(ends):
            raise click.ClickException(f"--strip expects two seeds or .npy latents such as 3,7 or a/z.npy,b/z.npy, "
                                       f"got '{strip}'")
        a, b = ends
        if not out.lower().endswith(".png"):
            out = os.path.splitext(out)[0] + ".png"
        gen = load_network(network, device)
        interpolation_strip(gen, a, b, steps, out, class_idx)
        click.echo(f"wrote {out} ({steps} images from {a} to {b})")
        return
    cols_rows = _parse_grid(grid)
    if size is not None and not 4 <= size <= 4096:
        raise click.ClickException("--size must be from 4 to 4096")
    if sigma < 0:
        raise click.ClickException("--sigma must be >= 0")
    frames = int(round(duration * fps))
    if frames < 2 or fps <= 0:
        raise click.ClickException("the video needs at least 2 frames: raise --duration or --fps")
    gen = load_network(network, device)
    gen.class_labels(class_idx, [0])                   # a --class mismatch fails before any work
    bar = progress_bar(frames, "frame")
    try:
        r = interpolation_video(gen, out, duration, fps, sigma, cols_rows, size, seed, class_idx, progress=bar.update)
    finally:
        bar.close()
    _fallback_note(out, r["path"])
    click.echo(f"wrote {r['path']} ({r['frames']} frames at {fps:g} fps, sigma {sigma:g} frames)")


@main.command("training-video")
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help=".mp4 or .gif (default RUN_DIR/training.mp4)")
@click.option("--fps", default=4.0, show_default=True, help="grids per second")
@click.option("--size", type=int, help="frame height in pixels (default: the grids')")
@friendly_errors
def training_video_cmd(run_dir, out, fps, size):
    """A video of a run's image grids over time, with kimg and resolution on every frame."""
    from ..explore import training_video

    if fps <= 0:
        raise click.ClickException("--fps must be > 0")
    if not os.path.isdir(run_dir):
        raise click.ClickException(f"'{run_dir}' is not a directory; give a run directory such as runs/00000-...")
    out = out or os.path.join(run_dir, "training.mp4")
    bar = progress_bar(len([f for f in os.listdir(run_dir) if f.startswith("fakes")]), "frame")
    try:
        r = training_video(run_dir, out, fps, size, progress=bar.update)
    finally:
        bar.close()
    _fallback_note(out, r["path"])
    click.echo(f"wrote {r['path']} ({r['frames']} frames)")


@main.command()
@click.option("--network", required=True, type=click.Path(), help=NETWORK_HELP)
@click.option("--data", required=True, help="the training data: a dataset, a folder or builtin:NAME")
@click.option("--seeds", default="0-7", show_default=True, help="generated images to look up, e.g. 0-7")
@click.option("--k", default=8, show_default=True, help="neighbours per image")
@click.option("--space", type=click.Choice(["pixel", "inception"]), default="pixel", show_default=True,
              help="distance in pixels, or between Inception pool3 features (needs --inception)")
@click.option("--inception", type=click.Path(dir_okay=False), help="Inception weights for --space inception")
@click.option("--data-count", default=10000, show_default=True, help="builtin data / folders: images to use")
@click.option("--class", "class_idx", help=CLASS_HELP)
@click.option("--out", default="neighbors.png", show_default=True, type=click.Path(dir_okay=False))
@DEVICE_OPTION
@friendly_errors
def neighbors(network, data, seeds, k, space, inception, data_count, class_idx, out, device):
    """Nearest training images of generated ones, as one grid (the paper's appendix F)."""
    from ..api import parse_seeds
    from ..explore import find_neighbors, neighbors_grid
    from ..util.grids import save_png

    seed_list = parse_seeds(seeds)
    if k < 1:
        raise click.ClickException("--k must be >= 1")
    gen = load_network(network, device)
    bar = progress_bar(0, "img")
    try:
        r = find_neighbors(gen, data, seed_list, k, space, inception, class_idx, data_count, progress=bar.update)
    finally:
        bar.close()
    save_png(out, neighbors_grid(r["generated"], r["level"], r["indices"]))
    click.echo(f"wrote {out}: {len(seed_list)} generated images (left) and their {r['indices'].shape[1]} nearest "
               f"training images in {space} space; nearest distances "
               + ", ".join(f"{d:.1f}" for d in r["distances"][:, 0]))


@main.command()
@click.option("--network", required=True, type=click.Path(), help=NETWORK_HELP)
@click.option("--outdir", default="export", show_default=True, type=click.Path(file_okay=False))
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="also write an ONNX graph")
@click.option("--resolution", type=int, help="ONNX output resolution (default: the level the generator was trained to)")
@friendly_errors
def export(network, outdir, onnx, resolution):
    """G_ema as safetensors + JSON (the file to share) and as ONNX, checked against PyTorch."""
    from ..export import export_onnx, export_safetensors

    gen = load_network(network, "cpu")
    os.makedirs(outdir, exist_ok=True)
    for path in export_safetensors(gen, outdir, {"exported_from": os.path.abspath(gen.source)}):
        click.echo(f"wrote {path}")
    if onnx:
        r = export_onnx(gen, outdir, resolution or gen.resolution)
        click.echo(f"wrote {r['path']}: output {r['shape']} on 8 latents, max |ONNX - PyTorch| = {r['max_abs_diff']:.2e}")


@main.command("convert-official")
@click.argument("pkl", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False))
@friendly_errors
def convert_official(pkl, out):
    """Convert one of the authors' released network pickles (TensorFlow or Theano) without TensorFlow.

    OUT.safetensors: the averaged generator Gs, for generate / interpolate / load_generator.
    OUT.pt: G, D and Gs (as G_ema), read like a checkpoint by generate, interpolate and metrics.
    """
    from ..official.convert import convert_file

    r = convert_file(pkl, out)
    net = r.net
    click.echo(f"read {r.source} networks: {net.resolution}x{net.resolution}, {net.channels} channel(s), "
               f"latent {net.z_dim}, {net.label_size} label(s), fused G/D {r.fused_G}/{r.fused_D}")
    if r.ignored:
        click.echo(f"note: build arguments the release's own code ignores too: {', '.join(r.ignored)}")
    if r.lod:
        click.echo(f"note: the networks were saved at lod {r.lod:g} (mid-growth); pggan runs them at full resolution")
    click.echo(f"wrote {out}")


@main.command()
@click.option("--network", required=True, type=click.Path(), help=NETWORK_HELP)
@click.option("--image", "images", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="an image to project (repeat for several)")
@click.option("--outdir", default="projected", show_default=True, type=click.Path(file_okay=False))
@click.option("--steps", default=300, show_default=True, help="Adam steps on z")
@click.option("--lr", default=0.05, show_default=True)
@click.option("--starts", default=16, show_default=True, help="random latents tried first; the closest is optimised")
@click.option("--noise", default=0.05, show_default=True, help="latent noise at the start, ramped to 0 (0 = none)")
@click.option("--inception", type=click.Path(dir_okay=False), help="add the Inception-feature distance (FID's weights)")
@click.option("--seed", default=0, show_default=True)
@click.option("--class", "class_idx", type=int, help="class of a conditional generator (default: its random starts "
              "take the classes in turn and the closest start's class is kept, saved as class.npy)")
@DEVICE_OPTION
@friendly_errors
def project(network, images, outdir, steps, lr, starts, noise, inception, seed, class_idx, device):
    """Find the latent whose image is closest to each --image: OUTDIR/NAME/ gets proj.png, target.png, z.npy,
    progress.png and distances.json."""
    from ..project import ProjectOptions, load_target, write_projection

    ProjectOptions(steps=steps, lr=lr, starts=starts, noise=noise).validate()
    gen = load_network(network, device)
    if class_idx is not None:
        gen.class_labels(class_idx, [None])            # a wrong --class fails before any work
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    if len(set(stems)) < len(stems):
        raise click.ClickException("two --image files share a name; their outputs would collide")
    targets = [load_target(p, gen.resolution, gen.net.channels).transpose(1, 2, 0) for p in images]  # all usable?
    for path, stem, target in zip(images, stems, targets):
        bar = progress_bar(steps, "step", desc=stem)
        try:
            p = gen.project(target, steps=steps, class_idx=class_idx, progress=lambda s: bar.update(1), lr=lr,
                            starts=starts, noise=noise, inception=inception, seed=seed)
        finally:
            bar.close()
        out = write_projection(p, os.path.join(outdir, stem))
        terms = " + ".join(p.terms)
        click.echo(f"{path}: distance {p.distances['total']:.4f} ({terms}; from {p.history[0][1]:.4f})"
                   + ("" if p.label is None else f", class {p.label}") + f" -> {os.path.dirname(out['z'])}")
