"""precision=auto: bf16 where the hardware computes it natively, fp32 elsewhere, and the log says why."""
import torch

from pggan.presets import PRESETS, get_preset
from pggan.training.plan import RunRequest, plan_run
from pggan.util.device import resolve_precision

CPU = torch.device("cpu")


def _cpu_bf16(monkeypatch, native: bool):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)


def test_auto_on_a_cpu_without_native_bf16_is_fp32_and_says_why(monkeypatch):
    _cpu_bf16(monkeypatch, False)
    precision, why = resolve_precision("auto", CPU)
    assert precision == "fp32" and "no native bf16" in why


def test_auto_on_a_cpu_with_native_bf16_is_bf16(monkeypatch):
    _cpu_bf16(monkeypatch, True)
    assert resolve_precision("auto", CPU)[0] == "bf16"


def test_amx_alone_counts_as_native(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", CPU)[0] == "bf16"


def test_an_explicit_precision_is_kept(monkeypatch):
    _cpu_bf16(monkeypatch, True)
    assert resolve_precision("fp32", CPU) == ("fp32", "as asked")
    _cpu_bf16(monkeypatch, False)
    assert resolve_precision("bf16", CPU) == ("bf16", "as asked")


def test_a_run_resolves_auto_into_its_saved_config_and_logs_it(monkeypatch):
    _cpu_bf16(monkeypatch, False)
    cfg = get_preset("cpu-small").replace(data_count=16)
    assert cfg.precision == "auto"
    spec, _ = plan_run(RunRequest(cfg), CPU)
    assert spec.config.precision == spec.precision == "fp32" and cfg.precision == "auto"   # the request is kept
    assert spec.request.precision == "auto" and "no native bf16" in spec.precision_why
    assert any("precision fp32" in n and "no native bf16" in n for n in spec.notes)
    _cpu_bf16(monkeypatch, True)
    assert plan_run(RunRequest(cfg), CPU)[0].precision == "bf16"


def test_paper_presets_keep_fp32():
    for name in PRESETS:                            # ours, for a CPU, pick the fast path at run time
        assert get_preset(name).precision == ("auto" if name in ("cpu-small", "demo") else "fp32"), name
