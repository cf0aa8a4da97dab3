"""Choosing a GPU by index, and timing what runs on it: the GPU is stood in for by mocks of torch.cuda."""
import pytest
import torch

from pggan.schedule import Phase
from pggan.util import device as devmod
from pggan.util.errors import DeviceError


@pytest.fixture
def two_gpus(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_a_gpu_index_the_machine_lacks_is_refused_with_what_it_has(two_gpus):
    with pytest.raises(DeviceError, match=r"'cuda:2' .* has 2 CUDA device\(s\): use one of cuda:0 to cuda:1"):
        devmod.resolve_device("cuda:2")
    assert two_gpus == []


def test_a_chosen_gpu_becomes_the_current_one(two_gpus):
    assert devmod.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert two_gpus == [torch.device("cuda", 1)]     # torch.cuda's defaults (streams, graph pools) follow it
    assert devmod.resolve_device("cuda") == torch.device("cuda") and len(two_gpus) == 1


def test_synchronize_waits_for_the_device_given(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: waited.append(("cuda", d)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append(("mps", None)))
    for d in (torch.device("cpu"), torch.device("cuda", 1), torch.device("mps")):
        devmod.synchronize(d)
    assert waited == [("cuda", torch.device("cuda", 1)), ("mps", None)]


def test_bench_and_budget_time_a_step_on_the_device_that_ran_it(monkeypatch):
    """Their step timings wait for the trainer's device: cuda:1's queue, not the current GPU's (a step on
    a second GPU timed without waiting for it measures only its launches)."""
    from pggan import bench
    from pggan.training import budget

    waited = []
    for module in (bench, budget):
        monkeypatch.setattr(module, "synchronize", waited.append)
    gpu1 = torch.device("cuda", 1)

    class Trainer:
        device = gpu1
        steps = 0

        def step(self, ph):
            self.steps += 1

    ph = Phase(kimg=0.0, lod=0.0, res_log2=2, alpha=1.0, batch=4, g_lr=1e-3, d_lr=1e-3)
    bench._step_fn(Trainer(), ph, gpu1)()
    budget._step(Trainer(), ph)
    assert waited == [gpu1, gpu1]


def test_the_commands_that_use_a_generator_take_a_gpu_where_there_is_one():
    """generate, interpolate, neighbors, project, metrics and serve default to --device auto, as train does."""
    from click.testing import CliRunner

    from pggan.cli import main

    for command in ("generate", "interpolate", "neighbors", "project", "metrics", "serve"):
        out = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        device = out[out.index("--device"):].split(" --")[0].split(" -h,")[0]     # that option's own help
        assert device.endswith("[default: auto]"), (command, device)
