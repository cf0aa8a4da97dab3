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
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "\r" not in out and "Warning" not in out and "it/s" not in out
    assert sum(line.startswith("tick ") for line in out.splitlines()) >= 4
