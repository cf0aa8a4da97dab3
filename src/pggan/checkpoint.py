"""Checkpoints that continue a run exactly and load without executing code.

A checkpoint is a ``torch.save`` of plain containers and tensors (loaded with ``weights_only=True``):
networks, optimizers, counters, RNG states, data order, config JSON and a format version.
The shareable generator file is safetensors with the network config in its metadata.
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch

from .config import ConfigError, NetworkConfig, TrainConfig
from .util.errors import PgganError, first_line
from .util.files import atomic_write, kimg_tag, tagged_files

FORMAT_VERSION = 1
GENERATOR_FILE = "generator-final.safetensors"     # what a finished run leaves for generate, metrics, export


class CheckpointError(PgganError, ValueError):
    """A checkpoint cannot be used; the message says why."""


def save_checkpoint(path: str, payload: dict) -> None:
    payload = dict(payload, format_version=FORMAT_VERSION, kind="pggan-checkpoint")
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str, map_location="cpu", lazy: bool = False) -> dict:
    """A checkpoint's contents, checked. ``lazy``: its tensors mapped from the file and read only where
    touched, for reading its config and counters (a 1024x1024 run's checkpoint is over 600 MB)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=lazy)
    except Exception as e:  # noqa: BLE001 - any failure to read it (torch raises many kinds) means the same
        first = first_line(e)
        if "weights only load failed" in first.lower():      # torch's advice to drop weights_only does not apply
            first = ("it is not a torch file, or it holds objects other than tensors and plain data "
                     "(never loaded: that would run code)")
        raise CheckpointError(f"'{path}' is not a readable pggan checkpoint (corrupt, truncated, or not "
                              f"a checkpoint): {first}") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "pggan-checkpoint":
        raise CheckpointError(f"'{path}' is not a pggan checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has checkpoint format {ckpt.get('format_version')}; this pggan reads "
                              f"format {FORMAT_VERSION}")
    return ckpt


def checkpoint_config(ckpt: dict) -> TrainConfig:
    try:
        return TrainConfig.from_dict(json.loads(ckpt["config"]))
    except (KeyError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"checkpoint has no valid config: {first_line(e)}") from None


def schedule_state(sched) -> dict:
    """The part of a run's schedule that the run itself moves (a budget's end and re-plans), as saved."""
    return {"stabilise_kimg_table": dict(sched.stabilise_kimg_table), "fade_kimg_table": dict(sched.fade_kimg_table),
            "total_kimg": float(sched.total_kimg)}


def schedule_state_from(saved: dict) -> dict:
    return {"stabilise_kimg_table": {int(k): float(v) for k, v in saved["stabilise_kimg_table"].items()},
            "fade_kimg_table": {int(k): float(v) for k, v in saved["fade_kimg_table"].items()},
            "total_kimg": float(saved["total_kimg"])}


def checkpoint_schedule(ckpt: dict, cfg: TrainConfig):
    """The schedule a checkpoint's run followed: its config's, with what the run moved."""
    sched = dataclasses.replace(cfg.sched)
    if "schedule" in ckpt:
        for k, v in schedule_state_from(ckpt["schedule"]).items():
            setattr(sched, k, v)
    return sched


def load_state(module: torch.nn.Module, state: dict, what: str, path: str) -> None:
    """load_state_dict with a message that names the mismatch instead of a wall of keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        detail = "; ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
            f"shape {', '.join(shapes[:3])}" if shapes else ""]))
        raise CheckpointError(f"{what} in '{path}' does not fit this network (a different size or options?): {detail}")
    module.load_state_dict(state)


def checkpoint_name(nimg: int) -> str:
    return f"checkpoint-{kimg_tag(nimg)}.pt"


def list_checkpoints(run_dir: str) -> list[str]:
    """Checkpoints of a run, oldest first."""
    return [p for _, p in tagged_files(run_dir, "checkpoint-", ".pt")]


def network_file(path: str, need_checkpoint: bool = False) -> str:
    """The network file a command reads for ``path``: the file itself, or for a run directory its final
    generator, else (a run not finished, or ``need_checkpoint``: G itself or the training state is
    wanted) its newest checkpoint."""
    if not os.path.isdir(path):
        return path
    final = os.path.join(path, GENERATOR_FILE)
    if not need_checkpoint and os.path.isfile(final):
        return final
    ckpts = list_checkpoints(path)
    if ckpts:
        return ckpts[-1]
    wanted = "no checkpoint-*.pt" if need_checkpoint else f"no {GENERATOR_FILE} and no checkpoint-*.pt"
    raise CheckpointError(f"'{path}' is a directory with {wanted}; give a run directory that `pggan train` wrote "
                          f"(after its first snapshot) or a network file (.pt or .safetensors)")


def prune_checkpoints(run_dir: str, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        os.unlink(p)


# ---- the shareable generator file --------------------------------------------------------

def save_generator(path: str, G_ema: torch.nn.Module, net: NetworkConfig, extra: dict | None = None) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in G_ema.state_dict().items()}
    meta = {"format": "pggan-generator", "format_version": str(FORMAT_VERSION),
            "net": json.dumps(TrainConfig(net=net).to_dict()["net"])}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def read_generator(path: str) -> tuple[NetworkConfig, dict, dict]:
    """(network config, state dict, metadata) of a file written by :func:`save_generator`."""
    from safetensors.torch import load

    try:
        with open(path, "rb") as f:
            data = f.read()
        tensors = load(data)
        from safetensors import safe_open
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any failure to read it means the same to the user
        raise CheckpointError(f"'{path}' is not a readable generator file: {first_line(e)}") from None
    if meta.get("format") != "pggan-generator":
        raise CheckpointError(f"'{path}' is a safetensors file but not a pggan generator")
    try:
        net = TrainConfig.from_dict({"net": json.loads(meta["net"])}).net
    except (KeyError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"'{path}' has no valid network description: {first_line(e)}") from None
    return net, tensors, meta

