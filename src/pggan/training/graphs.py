"""CUDA graphs of the training step: a step's ~1,000 small kernels launched as one graph.

In a multi-process run the gradients' all-reduces (and LSGAN's score) are NCCL collectives captured in
the graph: every rank captures and replays the same keys at the same steps, as NCCL requires of a
captured collective (the keys follow from the image count, which the ranks share). ADA's statistic is
all-reduced between steps, eagerly.

A graph is captured per key (the level, fade or not, the micro-batches, the lazy penalty's weight: what
fixes the sequence of kernels), after ``WARMUP`` eager steps of that key (cuDNN's autotuning, Adam's
state, the allocator's pools), and replayed for every later step of the key. What changes from step to
step reaches it through static buffers, copied in before each replay: the minibatch and the draws, alpha
(Trainer._alpha), the learning rates (Adam's tensor lr), G_ema's weight, ADA's p and LSGAN's noise (device
tensors updated in place). Graphs of levels below the current one are dropped, with their memory.

The backend is what touches CUDA (``CudaBackend``); tests and ``tools/graph_check.py --mock`` pass
``ReplayBackend``, which replays by calling the captured function again on its static buffers, so that
every value the host forgot to copy in shows as a difference from eager steps: it checks everything but
the driver (``tools/gpu_check.sh`` checks that on a GPU).
"""
from __future__ import annotations

import dataclasses

import torch

WARMUP = 2                 # eager steps of a key before it is captured


def graph_support(cfg, device: torch.device, world: int) -> str | None:
    """None when the training step can be captured, else why not (for the run's log)."""
    backend = _backend() if world > 1 else None
    reasons = [(device.type != "cuda", f"the device is {device.type}: CUDA graphs need a CUDA GPU"),
               (world > 1 and backend != "nccl", f"the processes all-reduce over {backend}: only NCCL's "
                                                 "collectives are captured in a CUDA graph"),
               (cfg.precision == "fp16", "fp16's loss scaler reads its scale on the host; bf16 is captured"),
               (cfg.compile, "compile: torch.compile's graphs are not captured again"),
               (cfg.optim.n_critic != 1, "n_critic > 1: the D steps of one minibatch differ"),
               (cfg.deterministic, "deterministic algorithms")]
    return next((why for cond, why in reasons if cond), None)


def _backend() -> str:
    return torch.distributed.get_backend() if torch.distributed.is_initialized() else "no process group"


class CudaBackend:
    """Warm-up on a side stream and capture with torch.cuda.graph, each graph in its own memory pool
    (graphs of one level replay in any order: the lazy penalty alternates them)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def warmup(self, fn):
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return out

    def capture(self, fn):
        """(replay, outputs): the graph of ``fn`` and the tensors it writes its results to."""
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            out = fn()
        return graph.replay, out


@dataclasses.dataclass
class Captured:
    replay: object
    static: object            # the StepInputs whose tensors the graph reads
    out: dict                 # the tensors the graph writes its statistics to


class StepGraphs:
    """The captured steps of one trainer, by key; ``run`` replays (or warms up, or captures) a step."""

    def __init__(self, backend, log=print):
        self.backend, self.log = backend, log
        self.graphs: dict[tuple, Captured] = {}
        self.seen: dict[tuple, int] = {}

    def run(self, key: tuple, train, ph, micro, inputs) -> dict:
        self._drop_below(key[0])
        g = self.graphs.get(key)
        if g is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] <= WARMUP:
                return self.backend.warmup(lambda: train(ph, micro, inputs))
            static = _static_copy(inputs)
            replay, out = self.backend.capture(lambda: train(ph, micro, static))
            g = self.graphs[key] = Captured(replay, static, out)
            self.log(f"CUDA graph captured: {2 ** key[0]}x{2 ** key[0]}{' fade' if key[1] else ''}, "
                     f"micro-batches {[hi - lo for lo, hi in key[2]]}, penalty weight {key[3]:g}")
        else:
            _copy_into(g.static, inputs)
        g.replay()
        return {k: v.clone() for k, v in g.out.items()}    # the next replay overwrites the graph's own

    def _drop_below(self, res_log2: int) -> None:
        for key in [k for k in self.graphs if k[0] < res_log2]:
            del self.graphs[key]


def _static_copy(inputs):
    """The graph's own input buffers: the tensors cloned, G_ema's weight a device tensor."""
    fields = {name: t.clone() for name, t in inputs.tensors().items()}
    fields["ema_weight"] = torch.tensor(float(inputs.ema_weight), device=inputs.reals.device)
    return dataclasses.replace(inputs, **fields)


def _copy_into(static, inputs) -> None:
    for name, t in inputs.tensors().items():
        getattr(static, name).copy_(t, non_blocking=True)
    static.ema_weight.fill_(inputs.ema_weight)


class ReplayBackend:
    """A capture that records nothing on a device: replaying runs the function again on its static inputs."""

    def __init__(self):
        self.warmups, self.captures = 0, 0

    def warmup(self, fn):
        self.warmups += 1
        return fn()

    def capture(self, fn):
        self.captures += 1
        out = {}

        def replay():
            out.clear()
            out.update(fn())
        return replay, out
