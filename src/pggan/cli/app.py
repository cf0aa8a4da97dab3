"""The ``pggan`` command group and what its commands share: error handling, device choice, progress bars."""
from __future__ import annotations

import functools
import os
import sys

import click

from ..util.errors import PgganError, describe_os_error

INTERRUPTED = "files already finished are complete; no partial file was left"


def friendly_errors(fn=None, *, interrupted: str = INTERRUPTED):
    """pggan's own errors (and file-system errors, which name the file) become one line and exit code 1;
    anything else is a bug and keeps its traceback. PGGAN_DEBUG=1 shows the traceback of every error.
    Ctrl-C ends with exit code 130 and ``interrupted``: what the command leaves behind."""
    if fn is None:
        return functools.partial(friendly_errors, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (PgganError, OSError) as e:
            if os.environ.get("PGGAN_DEBUG"):
                raise
            raise click.ClickException(describe_os_error(e) if isinstance(e, OSError) else str(e)) from None
        except KeyboardInterrupt:
            click.echo(f"Interrupted (Ctrl-C): {interrupted}.", err=True)
            sys.exit(130)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pggan")
def main():
    """Progressive Growing of GANs: train, generate, benchmark."""


DEVICE_OPTION = click.option("--device", default="auto", show_default=True,
                             help="auto: a GPU when there is one (CUDA, else Apple's MPS), else the CPU; or cpu, cuda:N, mps")

NETWORK_HELP = ("a run directory (its final generator, else its newest checkpoint), a checkpoint (.pt) "
                "or a generator (.safetensors)")


def load_network(network: str, device: str, use_ema: bool = True):
    from ..api import load_generator
    from ..util.device import resolve_device

    gen = load_generator(network, device=resolve_device(device), use_ema=use_ema)
    if os.path.isdir(network):
        click.echo(f"reading {gen.source}", err=True)
    return gen


def progress_bar(total: int, unit: str, **kwargs):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, leave=False, disable=None, **kwargs)   # None: terminals only


def mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n < 2 ** 30 else f"{n / 2 ** 30:.2f} GiB"
