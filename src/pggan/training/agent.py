"""The torchrun agent that ``pggan train --nproc N`` starts: ``python -m torch.distributed.run`` without its
traceback and failure report when a process fails or the agent is stopped (the processes' own messages
say what happened, once), and without its log lines; PGGAN_DEBUG=1 shows both."""
from __future__ import annotations

import logging
import os
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def quiet_torchrun_logs() -> None:
    """torchrun's own warnings (OMP_NUM_THREADS, the SIGTERMs it sends, a failed process's pid) repeat what
    the processes say; each of its loggers sets its own level, so each is raised here."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    debug = bool(os.environ.get("PGGAN_DEBUG"))
    if not debug:
        quiet_torchrun_logs()
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        if debug:
            raise
        failures = e.failures                      # rank -> what torchrun saw of that process
        rank = min(failures, key=lambda r: failures[r].timestamp)
        print(f"pggan train: {len(failures)} of the training processes failed, first rank {rank} (exit code "
              f"{failures[rank].exitcode}); what they said is above", file=sys.stderr)
        return 1
    except SignalException as e:          # the agent was stopped; the processes saved their checkpoint
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
