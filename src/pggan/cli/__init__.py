"""The ``pggan`` command line: one module per command group, all on :mod:`pggan.cli.app`."""
from . import dataset, generate, measure, serve, train  # noqa: F401  (each registers its commands)
from .app import main

__all__ = ["main"]
