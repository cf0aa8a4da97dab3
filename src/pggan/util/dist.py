"""Many processes with torch.distributed: NCCL on CUDA, gloo on CPU, started by torchrun.

The scheme follows NVlabs' later PyTorch code rather than DistributedDataParallel (which does not
support the gradient penalty's double backward): parameters are broadcast once from rank 0, every
rank computes the gradients of its share of the global minibatch, and one flattened gradient vector
is all-reduced (averaged) before each optimizer step. Random numbers for the whole global minibatch
(latents, penalty mixing, fake labels) are drawn identically on every rank and each takes its slice,
so a run does not depend on the number of processes except through per-rank minibatch statistics.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import PgganError


class ProcessGroupError(PgganError, RuntimeError):
    """The training processes lost each other or disagree."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1        # the processes on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (nothing to do for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def barrier() -> None:
    dist.barrier()


def shutdown() -> None:
    """Leave the process group once every rank is done with it. All pending work is finished and
    collected first: gloo's worker threads must not be left holding tensors when the interpreter exits
    (that aborts the process with 'terminate called without an active exception')."""
    if dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def exit_now(code: int = 0) -> None:
    """Leave a distributed process without the interpreter's teardown, in which gloo's C++ threads can
    still abort a process whose work is complete (a known PyTorch issue); everything is flushed first."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients as one flat vector and average them. Layers without a gradient (those
    above the current resolution) are left without one on every rank alike, so Adam skips them exactly
    as in a single process."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_mean(t: torch.Tensor, world: int) -> torch.Tensor:
    return all_sum(t) / world


def any_rank(flag: bool, device: torch.device) -> bool:
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def fingerprint(modules) -> torch.Tensor:
    """A float64 summary of all parameters that differs if any rank's copy differs."""
    parts = []
    for m in modules:
        for p in m.parameters():
            x = p.detach().double().reshape(-1)
            w = torch.arange(1, x.numel() + 1, dtype=torch.float64, device=x.device)
            parts.append(torch.stack([x.sum(), (x * w).sum() / x.numel(), x.square().sum()]))
    return torch.cat(parts)


def check_identical(modules, info: DistInfo) -> None:
    """Stop the run with a clear message if the ranks' parameters have diverged."""
    fp = fingerprint(modules)
    gathered = [torch.empty_like(fp) for _ in range(info.world)]
    dist.all_gather(gathered, fp)
    bad = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
    if bad:
        raise ProcessGroupError(f"the parameters of rank(s) {bad} differ from rank 0's; the processes have diverged "
                           f"(non-deterministic kernels or a hardware fault). Resume from the last checkpoint.")


def all_sum(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def gather_rows(x: torch.Tensor, total: int, info: DistInfo, per_rank: int, device: torch.device) -> torch.Tensor:
    """Rank r holds rows [r * per_rank, ...) of a ``total``-row batch; every rank gets the whole batch
    in order (padded to equal sizes for the collective, cut back after)."""
    if not info.enabled:
        return x
    pad = torch.zeros((per_rank,) + tuple(x.shape[1:]), dtype=x.dtype, device=device)   # NCCL: on the GPU
    pad[:len(x)] = x.to(device)
    parts = [torch.empty_like(pad) for _ in range(info.world)]
    dist.all_gather(parts, pad)
    counts = [max(0, min(per_rank, total - r * per_rank)) for r in range(info.world)]
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu()


def all_max(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_min(value: int, device: torch.device) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
