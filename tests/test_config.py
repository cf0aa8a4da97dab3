import json
import pathlib

import pytest

from pggan.config import ConfigError, TrainConfig, options_markdown, set_option, validate
from pggan.presets import PRESETS, get_preset

OPTIONS_DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_options_doc_table_is_in_sync():
    text = OPTIONS_DOC.read_text()
    block = text.split("<!-- options:start -->\n", 1)[1].split("\n<!-- options:end -->", 1)[0]
    assert block == options_markdown(), "run: python tools/sync_options.py"


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_round_trip(name):
    cfg = validate(get_preset(name))
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_the_demo_preset_is_cpu_small_with_its_recipe_and_the_makefile_types_only_it():
    demo, small = get_preset("demo"), get_preset("cpu-small")
    assert demo.conditional and demo.sched.lr_base == 0.005 and demo.budget_top_share == 0.85
    assert demo.budget_lr_rampdown == 0 and (demo.metrics, demo.metrics_kimg, demo.metrics_num) == ("swd", 20, 512)
    assert demo.net == small.net and demo.data == small.data
    makefile = (OPTIONS_DOC.parents[1] / "Makefile").read_text()
    train = [line.split() for line in makefile.splitlines() if "pggan train" in line]
    assert len(train) == 1 and train[0][2:] == ["--preset", "demo", "--budget", "$(DEMO_BUDGET)"], train
    assert 'DEMO_BUDGET = $(shell $(PY) -c "from pggan.presets import demo_budget; print(demo_budget())")' in makefile


def test_the_demo_gets_8_minutes_on_a_cpu_without_native_bf16(monkeypatch):
    import torch

    from pggan import presets
    from pggan.util import device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, budget in ((True, "4m"), (False, "8m")):
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        assert presets.demo_budget() == budget
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert presets.demo_budget() == "4m"


@pytest.mark.parametrize("key,value,msg", [
    ("net.resolution", "48", "power of two"),
    ("net.channels", "2", "1 or 3"),
    ("loss.kind", "hinge", "wgangp, lsgan or logistic"),
    ("sched.total_kimg", "-1", "total_kimg"),
    ("sched.batch_table", '{"7": 4}', "not a power-of-two"),
    ("sched.batch_table", "[1]", "cannot read"),
    ("precision", "fp8", "fp32, bf16 or fp16"),
    ("device", "tpu", "auto, cpu"),
    ("net.use_wscale", "maybe", "cannot read"),
    ("optim.n_critic", "0", "n_critic"),
    ("sched.lr_rampdown", "1", "lr_rampdown must be in"),
    ("clusters", "1", "at least 2"),
])
def test_invalid_values_give_clear_errors(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(set_option(TrainConfig(), key, value))


def test_unknown_option():
    with pytest.raises(ConfigError, match="unknown option 'net.foo'"):
        set_option(TrainConfig(), "net.foo", 1)
    with pytest.raises(ConfigError, match="unknown option"):
        TrainConfig.from_dict({"nett": {}})


def test_clusters_and_the_datasets_labels_are_one_or_the_other():
    cfg = set_option(set_option(TrainConfig(), "clusters", "8"), "conditional", "true")
    with pytest.raises(ConfigError, match="cannot be combined with conditional=true"):
        validate(cfg)
