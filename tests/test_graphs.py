"""The CUDA-graph path of the training step (#35), with the capture mocked: a 'graph' replays by calling
the captured function again on the buffers it was captured with, so every value the host forgot to copy
in (or baked in at capture) shows as a difference from the eager step. tools/gpu_check.sh compares the
real graphs with eager steps on a GPU."""
import dataclasses
import importlib.util
import pathlib

import pytest
import torch
from test_training import tiny_config

from pggan.config import set_option, validate
from pggan.training import graphs
from pggan.training.graphs import ReplayBackend
from pggan.training.plan import run_data
from pggan.training.trainer import Trainer

spec = importlib.util.spec_from_file_location(
    "graph_check", pathlib.Path(__file__).resolve().parents[1] / "tools" / "graph_check.py")
graph_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph_check)
CASES = graph_check.CASES          # one list of cases: the tool's, which gpu_check.sh runs on a GPU


def _trainer(tmp_path, case: str | None = None, **cfg_changes) -> Trainer:
    cfg = graph_check.with_case(tiny_config(tmp_path), case) if case else tiny_config(tmp_path)
    for path, value in cfg_changes.items():
        cfg = set_option(cfg, path, value)
    cfg = validate(cfg)
    cfg, images = run_data(cfg)
    return Trainer(cfg, images, torch.device("cpu"))


@pytest.mark.parametrize("case", CASES)
def test_replayed_graphs_train_exactly_as_eager_steps(tmp_path, case):
    def train(use_graphs: bool):
        t = _trainer(tmp_path, case)          # seeds the CPU's random numbers: one trainer at a time
        if use_graphs:
            assert t.use_graphs(log=lambda m: None, backend=backend) is None
        t.cur_nimg = 150                               # 4x4, then the fade into 8x8 from 200 images on
        return t, [t.step() for _ in range(14)]

    backend = ReplayBackend()
    (eager, eager_steps), (graphed, graphed_steps) = train(False), train(True)
    for a, b in zip(eager_steps, graphed_steps):
        assert a.phase == b.phase
        for key in a.stats:
            assert torch.equal(a.stats[key], b.stats[key]), (key, a.phase)
    for name in ("G", "D"):
        for (k, x), y in zip(getattr(eager, name).state_dict().items(), getattr(graphed, name).state_dict().values()):
            assert torch.equal(x, y), (name, k)
    for x, y in zip(eager.G_ema.parameters(), graphed.G_ema.parameters()):    # lerp vs a device-weight lerp
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert float(eager.aug_p) == float(graphed.aug_p) and float(eager.lsgan.d_hat) == float(graphed.lsgan.d_hat)
    assert backend.captures >= 2 and backend.warmups == graphs.WARMUP * backend.captures


def test_one_graph_per_level_fade_and_penalty_and_old_levels_are_dropped(tmp_path):
    t = _trainer(tmp_path, **{"loss.penalty_every": 2})
    backend, logged = ReplayBackend(), []
    t.use_graphs(log=logged.append, backend=backend)
    t.cur_nimg = 0
    for _ in range(8):                                   # 4x4: the penalty on every other step
        t.step()
    assert sorted(k[3] for k in t.graphs.graphs) == [0.0, 2.0] and {k[:2] for k in t.graphs.graphs} == {(2, False)}
    assert backend.captures == 2 and backend.warmups == 4
    t.cur_nimg = 200                                     # the fade into 8x8
    for _ in range(6):
        t.step()
    assert {k[:2] for k in t.graphs.graphs} == {(3, True)}               # 4x4's graphs went with their level
    assert any("8x8 fade" in m for m in logged)


def test_static_buffers_are_the_graphs_own_and_refilled_each_step(tmp_path):
    t = _trainer(tmp_path)
    t.use_graphs(log=lambda m: None, backend=ReplayBackend())
    t.cur_nimg = 0
    seen = []
    train = t._train

    def spy(ph, micro, inputs):
        seen.append((id(inputs.reals), inputs.reals.clone(), inputs.ema_weight))
        return train(ph, micro, inputs)
    t._train = spy
    for _ in range(graphs.WARMUP + 3):
        t.step()
    captured = seen[graphs.WARMUP:]
    assert len({i for i, _, _ in captured}) == 1                         # one static buffer, replayed
    assert not torch.equal(captured[0][1], captured[1][1])               # holding each step's new minibatch
    assert all(isinstance(w, torch.Tensor) for _, _, w in captured)      # G_ema's weight a device tensor


def test_learning_rates_are_moved_where_fused_adam_reads_them_after_a_resume(tmp_path, monkeypatch):
    """A resumed checkpoint's rates are CPU tensors (loaded to the CPU); on a GPU, fused Adam would read
    them on the host, once, so a graph would keep its capture's rate. The first step after loading puts
    them where fused Adam reads them (the GPU stood in for by the meta device), and later steps fill
    those same tensors in place."""
    from pggan.training import trainer as T
    t = _trainer(tmp_path)
    t.step()
    path = tmp_path / "ckpt.pt"
    torch.save(t.state_dict(), path)
    t.load_state_dict(torch.load(path, weights_only=True), str(path))
    monkeypatch.setattr(T, "_lr_device", lambda device: torch.device("meta"))

    def set_rates(lr):
        for opt in (t.opt_G, t.opt_D):
            T.set_lr(opt, lr)
        return [g["lr"] for opt in (t.opt_G, t.opt_D) for g in opt.param_groups]
    moved = set_rates(1e-3)
    assert all(r.device.type == "meta" for r in moved)
    assert all(a is b for a, b in zip(set_rates(5e-4), moved))


def test_where_steps_cannot_be_captured_the_reason_is_given(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    cuda = torch.device("cuda")
    assert graphs.graph_support(cfg, cuda, 1) is None
    assert "CUDA" in graphs.graph_support(cfg, torch.device("cpu"), 1)
    assert "over no process group" in graphs.graph_support(cfg, cuda, 2)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "gloo")
    assert "over gloo: only NCCL's collectives are captured" in graphs.graph_support(cfg, cuda, 2)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "nccl")
    assert graphs.graph_support(cfg, cuda, 2) is None        # NCCL's all-reduces are captured with the step
    monkeypatch.undo()
    for change, word in (({"precision": "fp16"}, "fp16"), ({"compile": True}, "compile"),
                         ({"deterministic": True}, "deterministic")):
        assert word in graphs.graph_support(dataclasses.replace(cfg, **change), cuda, 1)
    cfg.optim.n_critic = 2
    assert "n_critic" in graphs.graph_support(cfg, cuda, 1)
    t = _trainer(tmp_path)
    assert "CUDA" in t.use_graphs(log=lambda m: None) and t.graphs is None          # eager on the CPU


def test_graph_check_tool_runs_its_cases_with_the_mock(tmp_path):
    """tools/graph_check.py, as gpu_check.sh runs it, with the mocked capture: it must pass here."""
    import json
    import subprocess
    import sys

    tool = pathlib.Path(__file__).resolve().parents[1] / "tools" / "graph_check.py"
    out = tmp_path / "graphs.json"
    r = subprocess.run([sys.executable, str(tool), "--device", "cpu", "--mock", "--precision", "fp32",
                        "--cases", "wgangp-lazy", "--steps", "8", "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    (row,) = json.loads(out.read_text())
    # two graphs at 4x4 (with and without the lazy penalty); the fade's two steps only warm up
    assert row["ok"] and row["captures"] == 2 and row["loss_rel"] == 0.0 and row["weights_rel"]["G"] == 0.0
    r = subprocess.run([sys.executable, str(tool), "--device", "cpu", "--cases", "wgangp-lazy"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "CUDA graphs are not possible here: the device is cpu" in r.stderr
