"""What ``pggan train`` starts from: the config (preset, config file, flags, --set), the checkpoint a
resumed run continues, and the torchrun relaunch of ``--nproc N``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

from ..api import checkpoint_level
from ..checkpoint import checkpoint_config, load_checkpoint
from ..config import ConfigError, TrainConfig, merge, set_option
from ..config import validate as validate_config
from ..data.dataset import is_dataset, read_header
from ..metrics.registry import parse_metrics
from ..presets import get_preset
from ..util.proc import preexec_parent_death
from .rundir import find_latest_checkpoint, find_matching_checkpoint

DEFAULT_PRESET = "cpu-small"


def validate(cfg: TrainConfig) -> TrainConfig:
    """config.validate, and the metric names (which the metrics' registry owns)."""
    parse_metrics(validate_config(cfg).metrics)
    return cfg


def build_config(preset: str | None, config_file: str | None, flags: dict, sets=()) -> TrainConfig:
    """A validated config: the preset (cpu-small when neither a preset nor a file is given), then the
    JSON file's values over it, then the flags ({dotted option: value}) and --set KEY=VALUE items."""
    if flags.get("budget") and flags.get("sched.total_kimg") is not None:
        raise ConfigError("--budget plans the length of the run itself; drop --kimg (or --budget)")
    if preset:
        cfg = get_preset(preset)
    else:
        cfg = TrainConfig(preset="") if config_file else get_preset(DEFAULT_PRESET)
    if config_file:
        try:
            with open(config_file) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file '{config_file}' is not valid JSON: {e}") from None
        cfg = merge(cfg, d, origin=f"config file '{config_file}'")
    return validate(apply_overrides(cfg, flags, sets))


def apply_overrides(cfg: TrainConfig, flags: dict, sets=()) -> TrainConfig:
    """Command-line flags ({dotted option: value}, None = not given) and --set KEY=VALUE items, in that order."""
    for key, value in flags.items():
        if value is not None:
            cfg = set_option(cfg, key, value)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sched.total_kimg=200), got '{item}'")
        key, value = item.split("=", 1)
        cfg = set_option(cfg, key.strip(), value.strip())
    return cfg


def resume_config(resume: str, flags: dict, sets=(), preset: str | None = None,
                  config_file: str | None = None) -> tuple[TrainConfig, str]:
    """(config, checkpoint path) to continue a run: the checkpoint's own config with the flags over it.
    ``resume`` is a checkpoint path or 'latest' (the newest checkpoint under the --outdir flag)."""
    if flags.get("budget"):
        raise ConfigError("--budget plans a new run; a resumed run follows the plan saved with it (drop --budget)")
    if preset or config_file:
        raise ConfigError("--resume continues the checkpoint's own config; drop --preset/--config "
                          "(use --kimg or --set to change how long or where it runs)")
    path = resume
    if resume == "latest":
        outdir = flags.get("outdir") or "runs"
        path = find_latest_checkpoint(outdir)
        if path is None:
            raise ConfigError(f"--resume latest: no checkpoint found under '{outdir}'")
    base = checkpoint_config(load_checkpoint(path, lazy=True))
    cfg = validate(apply_overrides(base, flags, sets))
    if cfg.net != base.net:
        raise ConfigError("the network options differ from the checkpoint's; a run cannot change its networks "
                          "when resuming")
    return cfg, path


GENERATOR_ONLY = ("is a generator only; fine-tuning needs the discriminator too: give a run's checkpoint "
                  "(checkpoint-*.pt) or a .pt written by `pggan convert-official NET.pkl OUT.pt`")


def init_config(init: str, preset: str | None, config_file: str | None, flags: dict, sets=()) -> TrainConfig:
    """``--init NETWORK``: a new run (the preset, file and flags as usual) whose networks are NETWORK's:
    its widths, latent size and channels, the target resolution of --resolution (default the network's),
    and a schedule that starts stabilising at the level the network was trained at."""
    if init.endswith(".safetensors"):
        raise ConfigError(f"--init '{init}' {GENERATOR_ONLY}")
    ckpt = load_checkpoint(init, lazy=True)
    if not all(k in ckpt for k in ("G", "D", "G_ema")):
        raise ConfigError(f"--init '{init}' {GENERATOR_ONLY}")
    source = checkpoint_config(ckpt)
    given = given_options(None, flags, sets)
    widths = sorted(k for k in given if k.startswith("net.") and k != "net.resolution")
    if widths:
        raise ConfigError(f"--init takes the network's own options; drop {', '.join(widths)}")
    cfg = build_config(preset, config_file, flags, sets)
    target = cfg.net.resolution if "net.resolution" in given else source.net.resolution
    res = 2 ** checkpoint_level(ckpt, source)[0]
    if target < res:
        raise ConfigError(f"--init '{init}' was trained at {res}x{res}; fine-tuning cannot go below that "
                          f"(use --resolution {res} or more)")
    net = replace(source.net, resolution=target)
    _check_init_data(cfg, net)
    return validate(cfg.replace(init=os.path.abspath(init), net=net, sched=replace(cfg.sched, start_resolution=res)))


def _check_init_data(cfg: TrainConfig, net) -> None:
    """What a fine-tuned network cannot take, said before any work: a dataset of other channels or a lower
    resolution (a folder of images is converted to the network's channels). Its classes are decided with
    every other run's (training/labels.py)."""
    if is_dataset(cfg.data):
        h = read_header(cfg.data)
        if h["channels"] != net.channels:
            raise ConfigError(f"--init: the network makes {net.channels}-channel images but '{cfg.data}' has "
                              f"{h['channels']}; convert the source again with --channels {net.channels}")
        if h["resolution"] < net.resolution:
            raise ConfigError(f"--init: '{cfg.data}' is {h['resolution']}x{h['resolution']}, below the run's "
                              f"{net.resolution}x{net.resolution}")


def given_options(config_file: str | None, flags: dict, sets=()) -> frozenset:
    """The dotted options the user set: flags, --set items and the config file's keys."""
    keys = {k for k, v in flags.items() if v is not None} | {s.split("=", 1)[0].strip() for s in sets if "=" in s}
    if config_file:
        with open(config_file) as f:
            keys |= set(_dotted(json.load(f)))
    return frozenset(keys)


def _dotted(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and k in ("net", "loss", "sched", "optim", "aug"):
            yield from _dotted(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def auto_config(request: TrainConfig) -> tuple[TrainConfig, str | None]:
    """``--resume auto``: (config, checkpoint) of the newest run under --outdir that was started with the
    options ``request`` and has a checkpoint; (``request``, None) when there is none. A job script can
    then be one line that starts the run the first time and continues it every time after."""
    path = find_matching_checkpoint(request)
    if path is None:
        return request, None
    return checkpoint_config(load_checkpoint(path, lazy=True)), path


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """``pggan train --nproc N ...`` = ``torchrun --standalone --nproc_per_node N -m pggan train ...`` (through
    :mod:`.agent`: a failure is told once, by the processes); returns the agent's exit code."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "pggan.training.agent", "--standalone", f"--nproc_per_node={nproc}", "-m", "pggan"] + args
    # torchrun stops its workers gracefully on SIGTERM (they save a checkpoint): sent when this process dies
    return subprocess.call(cmd, preexec_fn=preexec_parent_death(signal.SIGTERM))
