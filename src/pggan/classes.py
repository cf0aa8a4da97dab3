"""A conditional generator's classes: how often each was trained on, whose they are, and how the class
of an image is drawn when nobody names one.

A network trained on classes carries their prior: the share of each class in its training data, and
whether the classes are the user's (a dataset's labels, ``conditional=true``) or pggan's own
(``clusters``: k-means groups that ``--budget`` makes where the data has no labels). Without a class
asked for, seed ``s`` draws z exactly as for an unconditional network and, from a random stream of its
own, a class from the prior, so that the images follow the distribution the network learned: a
network of pggan's clusters is used as an unconditional one. ``turn`` (seed s: class s mod C) is there
to show every class equally. Every path (generate, grids, metrics, serve, videos, ONNX) draws through
this module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

SOURCES = ("labels", "clusters")
DRAWS = ("prior", "turn")         # what --class takes besides a class number
CLASS_STREAM = 0x636C6173         # a seed's class comes from this stream of its own, never from z's


class ClassPriorError(ValueError):
    """A stored class prior is unreadable or does not fit the network."""


@dataclass(frozen=True)
class ClassPrior:
    freqs: tuple[float, ...]      # the share of each class in the training data, summing to 1
    source: str = "labels"        # "labels": the user's; "clusters": made by pggan

    @property
    def size(self) -> int:
        return len(self.freqs)

    @property
    def implicit(self) -> bool:
        """True when the user never gave classes: the network is used as an unconditional one."""
        return self.source == "clusters"

    @classmethod
    def of_labels(cls, labels: np.ndarray, size: int, source: str) -> ClassPrior:
        counts = np.bincount(np.asarray(labels, np.int64), minlength=size)[:size].astype(np.float64)
        return cls(tuple(float(c) for c in counts / max(counts.sum(), 1.0)), source)

    @classmethod
    def uniform(cls, size: int, source: str = "labels") -> ClassPrior:
        return cls(tuple([1.0 / size] * size), source)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "freqs": [round(f, 8) for f in self.freqs]})

    @classmethod
    def from_json(cls, text: str, size: int) -> ClassPrior:
        """The prior stored with a network of ``size`` classes; ClassPriorError when it does not fit."""
        try:
            d = json.loads(text)
            freqs, source = np.asarray(d["freqs"], np.float64), str(d["source"])
        except (TypeError, ValueError, KeyError) as e:
            raise ClassPriorError(f"unreadable class prior ({e})") from None
        if source not in SOURCES:
            raise ClassPriorError(f"class prior source '{source}' is not one of {', '.join(SOURCES)}")
        if freqs.shape != (size,) or not np.all(np.isfinite(freqs)) or (freqs < 0).any() or freqs.sum() <= 0:
            raise ClassPriorError(f"the class prior does not fit a network of {size} classes")
        return cls(tuple(float(f) for f in freqs / freqs.sum()), source)

    def cumulative(self) -> np.ndarray:
        """The class boundaries in [0, 1]: class k holds uniforms in [cum[k-1], cum[k])."""
        return np.cumsum(np.asarray(self.freqs, np.float64))[:-1]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` classes drawn from the prior with ``rng`` (int64 [n])."""
        return classes_from_uniforms(rng.random(n), self.cumulative())

    def draw(self, seeds) -> np.ndarray:
        """The class of each seed, drawn from the prior (int64 [N])."""
        return classes_from_uniforms(class_uniforms(seeds), self.cumulative())


def class_uniforms(seeds) -> np.ndarray:
    """One uniform in [0, 1) per seed, the same for the same seed every time (float64 [N])."""
    return np.array([np.random.default_rng([int(s), CLASS_STREAM]).random() for s in seeds], np.float64)


def classes_from_uniforms(u: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Inverse CDF: the number of class boundaries at or below each uniform (the ONNX graph does the same)."""
    return (np.asarray(u)[:, None] >= np.asarray(cumulative)[None, :]).sum(1).astype(np.int64)


def blend_classes(a: int, b: int, size: int, ts) -> np.ndarray:
    """Class vectors moving linearly from class ``a`` to class ``b`` at ``ts`` in [0, 1], float32
    [len(ts), size]: an interpolation between images of two classes without a jump."""
    ends = np.eye(size, dtype=np.float32)[[a, b]]
    ts = np.asarray(ts, np.float32)[:, None]
    return (1 - ts) * ends[0] + ts * ends[1]


def parse_class(text) -> int | str | None:
    """--class: a class number, 'prior' or 'turn' (None: the network's default)."""
    if text is None or isinstance(text, int):
        return text
    t = str(text).strip().lower()
    if t in DRAWS:
        return t
    if t.isdigit():
        return int(t)
    raise ValueError(f"--class takes a class number, 'prior' (drawn from the training data's shares) or "
                     f"'turn' (seed s: class s mod the classes), got '{text}'")
