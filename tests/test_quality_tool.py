"""tools/quality_budget.py end to end on a tiny folder of images: train, measure, and measure a checkpoint."""
import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "quality_budget.py"


def test_quality_budget_trains_measures_and_remeasures_a_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "q"
    common = [sys.executable, str(TOOL), "--data", str(data), "--resolution", "8", "--outdir", str(out),
              "--swd-repeats", "1", "--splits", "2"]
    train = ["--kimg", "0.064", "--set", "sched.growing=false", "--set", "tick_kimg=0.032",
             "--set", "checkpoint_kimg=0.032", "--set", "image_kimg=0.032", "--set", "grid_size=2"]
    subprocess.run(common + train, check=True, capture_output=True, text=True)
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    first = json.loads((out / "quality.jsonl").read_text().splitlines()[0])
    assert first["kimg"] == 0.064 and first["images"] == 24 and (run / "quality.png").exists()
    assert first["floor"]["avg"] > 0 and first["half_over_floor"] == first["half"]["avg"] / first["floor"]["avg"]
    per_split = first["half_over_floor_per_split"]       # two random halves, two ratios; the mean's lies between
    assert len(per_split) == 2 and per_split[0] != per_split[1]
    assert min(per_split) - 1e-9 <= first["half_over_floor"] <= max(per_split) + 1e-9
    overfit = first["d_overfit"]            # from the last checkpoint's D and G, over one batch of 16 reals
    assert overfit["network"] == str(run / "checkpoint-000000.064.pt") and -1 <= overfit["signal"] <= 1
    assert overfit["signal"] * 16 % 2 == 0      # the mean of 16 signs of +-1: k/8 for an integer k

    ckpt = run / "checkpoint-000000.032.pt"
    subprocess.run(common + ["--run", str(run), "--network", str(ckpt)], check=True, capture_output=True, text=True)
    again = json.loads((out / "quality.jsonl").read_text().splitlines()[1])
    assert again["kimg"] == 0.032 and again["network"] == str(ckpt) and (run / "quality-000000.032.png").exists()
    assert again["fake_vs_real"] != first["fake_vs_real"]       # another network, another distance
    assert again["d_overfit"]["network"] == str(ckpt) and again["d_overfit"]["real_score"] != overfit["real_score"]
    r = subprocess.run(common + ["--network", str(ckpt), "--kimg", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--network needs --run" in r.stderr

    # a run conditioned on clusters is measured as pggan generate draws it, beside the old paired draw
    subprocess.run(common + train + ["--set", "clusters=2", "--desc", "clusters"], check=True, capture_output=True,
                   text=True)
    third = json.loads((out / "quality.jsonl").read_text().splitlines()[2])
    assert third["run"].endswith("-clusters") and third["kimg"] == 0.064
    assert third["fake_vs_real_paired"]["avg"] > 0 and third["fake_vs_real_paired"] != third["fake_vs_real"]
