"""The progress bar only on a terminal; a redirected run logs one line per tick with no carriage
returns and no warnings; a budget's bar never shows an ETA past the budget's end."""
import io
import subprocess
import sys
import time
import warnings

from test_training import tiny_config

from pggan.training import progress
from pggan.training.progress import TrainingBar


def test_the_bar_is_wanted_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.wanted(None) and progress.wanted(True)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress.wanted(None) and not progress.wanted(False)


def test_a_moving_total_never_falls_below_what_was_trained_and_a_budget_shows_its_own_time_left(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # tqdm's "clamping frac" warning would fail here
        bar = TrainingBar(total_kimg=10, cur_kimg=0, ends_at=time.time() + 90)
        for _ in range(8):
            bar.update(2.0, 32, 1.0, 100.0)                # 16 kimg trained of a total that was 10
            bar.set_total(12)                              # the budget re-plans below what has been trained
        assert bar.bar.total >= bar.bar.n == 16
        bar.close()
    text = err.getvalue()
    assert "left" in text and "<" not in text.split("16.0/")[-1]            # no extrapolated ETA
    assert int(text.rsplit(" left", 1)[0][-5:-3]) <= 1                       # 01:29 or less: the budget's clock


def test_a_redirected_run_logs_lines_without_carriage_returns_or_warnings(tmp_path):
    cfgfile = tmp_path / "cfg.json"
    cfgfile.write_text(tiny_config(tmp_path).to_json())
    proc = subprocess.run([sys.executable, "-m", "pggan", "train", "--config", str(cfgfile)],
                          capture_output=True, timeout=300)        # bytes: text mode would turn \r into \n
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, out
    assert "\r" not in out and "Warning" not in out and "it/s" not in out
    assert sum(line.startswith("tick ") for line in out.splitlines()) >= 4


def test_every_command_logs_no_bar_when_redirected(tmp_path):
    """dataset create, generate, metrics, interpolate, training-video and project: no carriage return
    (no bar) in a redirected log; --progress still gives dataset create its bar."""
    from pggan.training.run import run_training

    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.45                              # ends at 8x8
    run = str(run_training(cfg, progress=False, echo=lambda m: None).run_dir)
    gen = f"{run}/generator-final.safetensors"
    commands = [
        ["dataset", "create", "builtin:shapes", str(tmp_path / "ds"), "--resolution", "8", "--count", "40"],
        ["generate", "--network", gen, "--seeds", "0-7", "--outdir", str(tmp_path / "gen")],
        ["metrics", "--network", gen, "--data", "builtin:shapes", "--num", "16", "--metrics", "swd"],
        ["metrics", "--images", str(tmp_path / "gen"), "--data", "builtin:shapes"],
        ["interpolate", "--network", gen, "--out", str(tmp_path / "i.gif"), "--duration", "0.3", "--fps", "10",
         "--sigma", "1"],
        ["training-video", run, "--out", str(tmp_path / "t.gif")],
        ["project", "--network", gen, "--image", f"{tmp_path / 'gen'}/seed0000.png", "--steps", "3",
         "--outdir", str(tmp_path / "proj")],
    ]
    for args in commands:
        log = tmp_path / "log"
        with open(log, "wb") as f:
            proc = subprocess.run([sys.executable, "-m", "pggan", *args], stdout=f, stderr=subprocess.STDOUT,
                                  timeout=300)
        out = log.read_bytes()
        assert proc.returncode == 0, (args, out.decode())
        assert b"\r" not in out and b"it/s" not in out, (args, out.decode())
    proc = subprocess.run([sys.executable, "-m", "pggan", "dataset", "create", "builtin:shapes", str(tmp_path / "ds2"),
                           "--resolution", "8", "--count", "40", "--progress"], capture_output=True, timeout=300)
    assert proc.returncode == 0 and b"\r" in proc.stderr, proc.stderr.decode()
