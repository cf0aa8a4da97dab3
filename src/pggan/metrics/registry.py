"""The metrics pggan computes, in the order they are reported: adding one is its module's
:class:`~pggan.metrics.base.Metric` and one line here."""
from __future__ import annotations

from ..config import ConfigError
from .base import Metric
from .fid import FIDMetric, ISMetric
from .kid import KIDMetric
from .msssim import MSSSIMMetric
from .precision_recall import PRMetric
from .swd import SWDMetric

METRICS: dict[str, Metric] = {m.name: m for m in (SWDMetric(), MSSSIMMetric(), FIDMetric(), ISMetric(), KIDMetric(),
                                                  PRMetric())}


def parse_metrics(text: str | list) -> list[str]:
    """'swd, FID' -> ['swd', 'fid']: known names, lower case, without repeats (ConfigError otherwise)."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric '{unknown[0]}'; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))
