"""``pggan serve``."""
from __future__ import annotations

import os

import click

from .app import DEVICE_OPTION, friendly_errors, main


@main.command()
@click.argument("path", default="runs", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every network)")
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=2, show_default=True, help="threads generating images")
@click.option("--max-images", default=64, show_default=True, help="most images one request may ask for")
@DEVICE_OPTION
@friendly_errors(interrupted="the server stopped")
def serve(path, host, port, workers, max_images, device):
    """A local web page: the runs under PATH (a runs folder, one run, or a network file) with live curves and
    grids, and an explorer of their generators."""
    from ..util.device import resolve_device
    from ..util.errors import UsageError

    if not os.path.exists(path):
        raise UsageError(f"'{path}' does not exist; give a runs folder, a run directory or a network file")
    if os.path.isfile(path) and not path.endswith((".pt", ".safetensors")):
        raise UsageError(f"'{path}' is not a network (.pt or .safetensors) nor a folder of runs")
    if not 1 <= workers <= 64 or not 1 <= max_images <= 1024 or not 0 < port < 65536:
        raise UsageError("--workers must be 1..64, --max-images 1..1024 and --port 1..65535")
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError:
        raise UsageError("pggan serve needs starlette and uvicorn: pip install 'pggan[serve]'") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can see these runs and "
                   f"generate images", err=True)
    app = create_app(path, workers=workers, max_images=max_images, device=resolve_device(device))
    click.echo(f"serving {os.path.abspath(path)} at http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
