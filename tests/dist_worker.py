"""Run by tests/test_distributed.py under torchrun (or alone): train a few steps, save this rank's state."""
import json
import sys

import torch

from pggan.config import TrainConfig
from pggan.data.load import load_images
from pggan.training.graphs import ReplayBackend
from pggan.training.trainer import Trainer
from pggan.util.dist import exit_now, init_from_env, shutdown

cfg = TrainConfig.from_dict(json.load(open(sys.argv[1])))
out, steps = sys.argv[2], int(sys.argv[3])
graphs = len(sys.argv) > 4 and sys.argv[4] == "graphs"      # CUDA graphs, the capture mocked
info = init_from_env("cpu")
images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
trainer = Trainer(cfg, images, torch.device("cpu"), info)
backend = ReplayBackend()
if graphs:
    assert trainer.use_graphs(log=print, backend=backend) is None
done = [trainer.step() for _ in range(steps)]
losses = [float(step.stats["loss_d"]) for step in done]
metrics = None
if cfg.metrics:
    from pggan.training.metric_tracker import TrainingMetrics
    metrics = TrainingMetrics(trainer).run(None, 0.0, print)
torch.save({"metrics": json.dumps(metrics), "G": trainer.G.state_dict(), "D": trainer.D.state_dict(),
            "G_ema": trainer.G_ema.state_dict(),
            "opt_G": trainer.opt_G.state_dict(), "opt_D": trainer.opt_D.state_dict(), "losses": losses,
            "cur_nimg": trainer.cur_nimg, "captures": backend.captures,
            "alpha": (done[-1].phase if steps else trainer.phase()).alpha},
           f"{out}/rank{info.rank}-of-{info.world}{'-graphs' if graphs else ''}.pt")
shutdown()
if info.enabled:
    exit_now(0)
