"""``pggan train``."""
from __future__ import annotations

import os
import sys
import time

import click

from ..util.device import PRECISION_CHOICES
from ..util.proc import exit_with_parent
from ..util.timing import process_age
from .app import friendly_errors, main


@main.command()
@click.option("--preset", help="start from a named configuration (default: cpu-small)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON file of options over the preset")
@click.option("--data", help="builtin:shapes or a folder of images")
@click.option("--resolution", "net__resolution", type=int, help="target resolution")
@click.option("--kimg", "sched__total_kimg", type=float, help="length of the run in kimg")
@click.option("--budget", help="wall-clock time for the whole run (25m, 2h, 3d): the schedule is planned to fit it")
@click.option("--loss", "loss__kind", type=click.Choice(["wgangp", "lsgan", "logistic"]))
@click.option("--device", help="auto, cpu, cuda, cuda:N, mps")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES))
@click.option("--seed", type=int)
@click.option("--mirror/--no-mirror", default=None, help="horizontal mirror augmentation")
@click.option("--outdir", help="parent of the run directories (default runs)")
@click.option("--desc", help="extra text in the run directory name")
@click.option("--deterministic", is_flag=True, default=None, help="deterministic kernels (exact resume)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="any option, e.g. --set sched.lod_training_kimg=50")
@click.option("--resume", help="a checkpoint path; 'latest' (the newest under --outdir); or 'auto': continue the newest "
              "run this same command started, else start one (for job scripts)")
@click.option("--init", type=click.Path(dir_okay=False),
              help="fine-tune: start a new run from this network (a checkpoint, or a .pt of convert-official)")
@click.option("--dry-run", is_flag=True, help="plan the run (data, classes, precision, batches; a --budget run times "
              "this machine) and print its spec, as training_options.json will hold it, without training")
@click.option("--help-options", is_flag=True, help="list every option with its default and exit")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="processes on this machine (one per GPU; gloo on CPU), started through torchrun")
@click.option("--progress/--no-progress", default=None,
              help="the progress bar (default: only when stderr is a terminal; redirected, one line per tick)")
@friendly_errors(interrupted="checkpoints already written are complete; continue with --resume auto (or latest)")
def train(preset, config_file, sets, resume, init, dry_run, help_options, nproc, progress, **flags):
    """Train a progressive GAN; writes runs/NNNNN-<desc>/."""
    from ..config import options_markdown
    from ..training.launch import auto_config, build_config, given_options, init_config, relaunch_with_torchrun, resume_config
    from ..training.plan import RunRequest, check_request, plan_run
    from ..training.progress import wanted
    from ..training.run import run_training
    from ..util.device import resolve_device

    if help_options:
        click.echo(options_markdown())
        return
    if nproc < 1:
        raise click.ClickException("--nproc must be >= 1")
    if "WORLD_SIZE" in os.environ:
        exit_with_parent()             # a worker never outlives its torchrun agent (kill -9 included)
    flags = {k.replace("__", "."): v for k, v in flags.items() if v is not None}
    if init and resume and resume != "auto":
        raise click.ClickException("--init starts a new run from a network, --resume continues a run: use one "
                                   "(or --resume auto, which continues the --init run this command started)")
    new = (lambda: init_config(init, preset, config_file, flags, sets)) if init else \
        (lambda: build_config(preset, config_file, flags, sets))
    if resume == "auto":
        cfg, resume = auto_config(new())
    elif resume:
        cfg, resume = resume_config(resume, flags, sets, preset, config_file)
    else:
        cfg = new()
    started = time.time() - process_age()
    req = RunRequest(cfg, given_options(config_file, flags, sets), resume, started)
    if dry_run:
        click.echo(plan_run(req, resolve_device(cfg.device))[0].to_json())
        return
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if cfg.device.startswith("cuda:"):
            raise click.ClickException(f"--device {cfg.device} with --nproc {nproc}: each process uses the GPU of "
                                       f"its rank; choose the GPUs with CUDA_VISIBLE_DEVICES and --device cuda")
        check_request(req, nproc)                  # here, once, rather than by every process
        sys.exit(relaunch_with_torchrun(nproc, sys.argv[1:]))
    result = run_training(req, progress=wanted(progress))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from ..util.dist import exit_now
        exit_now(result.exit_code)        # skip the interpreter teardown that gloo's threads can abort
    if result.exit_code:
        sys.exit(result.exit_code)
