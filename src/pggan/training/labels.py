"""A run's classes, decided once: none, the data's labels, or clusters of the images (beyond the paper).

:func:`decide` reads what the user asked (``conditional`` true, false or not given; ``clusters``),
what the data has, what the network being continued or fine-tuned learned, and what a ``--budget``
run would add, and returns one :class:`Decision` or raises one ConfigError; the table of cases is in
docs/budget.md#classes. :func:`apply` then labels the images. Clusters keep their identity: the
centres are saved with the run (``training_options.json`` and every checkpoint), a resumed run
assigns its images to the saved ones and refuses data they no longer fit, and ``--init`` from a
clustered network assigns the new images to the source's centres.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..classes import ClassPrior
from ..config import ConfigError
from ..data.base import DataError, ImageSet
from ..data.clusters import assign, fit_centres, with_labels

KINDS = ("none", "data", "clusters")
REFIT_SHARE = 0.1     # a resumed run refuses data whose class shares moved this far (total variation) from the saved


@dataclass(frozen=True)
class Source:
    """What a continued (``--resume``) or fine-tuned (``--init``) network learned: its classes."""
    classes: int                  # 0: unconditional
    kind: str = "data"            # "data" (the user's labels) or "clusters"
    centres: tuple = ()           # clusters with saved centres: [classes][features]
    prior: tuple = ()             # the saved share of each class


@dataclass(frozen=True)
class Decision:
    kind: str                     # one of KINDS
    count: int = 0
    why: str = ""                 # one line for the log
    centres: tuple = ()           # clusters: assign to these (empty: fit new ones)
    check_prior: tuple = ()       # a resumed run: refuse images whose shares moved from these


@dataclass(frozen=True)
class Labels:
    """The run's classes as planned: what :class:`RunSpec` saves."""
    kind: str = "none"
    count: int = 0
    why: str = ""
    centres: tuple = ()           # clusters: [count][3 * 8 * 8 values] in class order (class 0 the largest)
    prior: tuple = ()             # the share of each class in the training images

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Labels:
        return cls(d["kind"], int(d["count"]), d.get("why", ""), tuple(tuple(c) for c in d.get("centres", ())),
                   tuple(d.get("prior", ())))

    def source(self) -> Source:
        return Source(self.count, "clusters" if self.kind == "clusters" else "data", self.centres, self.prior)


def decide(*, data_labels: int, conditional: bool | None, clusters: int, source: Source | None = None,
           resume: bool = False, budget_clusters: int = 0) -> Decision:
    """The one decision. ``conditional``: None when not given. ``source``: the network a resumed or
    fine-tuned run starts from (None for a new network). ``budget_clusters``: the clusters a --budget
    run would condition on where nothing else decides (0 = none). Options that contradict each other
    (clusters with conditional=true) were refused by config.validate."""
    if resume:
        return _resumed(source, data_labels)
    if source is None:
        return _new(data_labels, conditional, clusters, budget_clusters)
    return _fine_tuned(source, data_labels, conditional, clusters)


def _new(data_labels: int, conditional: bool | None, clusters: int, budget_clusters: int) -> Decision:
    if clusters:
        return Decision("clusters", clusters, f"conditioned on {clusters} clusters of the images (clusters)")
    if conditional:
        if not data_labels:
            raise ConfigError("conditional=true needs labels, but the data has none; use --set clusters=K to "
                              "condition on clusters of the images instead")
        return Decision("data", data_labels, f"conditioned on the data's {data_labels} classes (conditional=true)")
    if conditional is None and budget_clusters >= 2:
        return Decision("clusters", budget_clusters,
                        f"budget: conditioned on {budget_clusters} clusters of the images (budget_clusters; "
                        f"--set budget_clusters=0 or conditional=false for an unconditional generator)")
    return Decision("none")


def _fine_tuned(src: Source, data_labels: int, conditional: bool | None, clusters: int) -> Decision:
    k = src.classes
    if not k:
        if conditional or clusters:
            what = "the data's classes" if conditional else f"{clusters} clusters"
            raise ConfigError(f"--init: the network is unconditional and cannot learn {what}; leave out "
                              f"{'conditional=true' if conditional else 'clusters'} (or say conditional=false)")
        if data_labels and conditional is None:
            raise ConfigError(f"--init: the data has {data_labels} classes but the network is unconditional; say "
                              f"--set conditional=false to fine-tune it without them")
        return Decision("none")
    if conditional is False:
        return Decision("none", why=f"--init: the network's {k} classes are dropped (conditional=false)")
    if clusters and clusters != k:
        raise ConfigError(f"--init: the network has {k} classes, so it cannot learn {clusters} clusters; use "
                          f"--set clusters={k}")
    if conditional:
        if data_labels != k:
            raise ConfigError(f"--init: the network has {k} classes, the data {data_labels or 'none'}")
        return Decision("data", k, f"--init: the network's {k} classes are the data's labels")
    if clusters or src.kind == "clusters":
        if src.centres:
            return Decision("clusters", k, f"--init: the images are assigned to the network's {k} clusters",
                            centres=src.centres)
        return Decision("clusters", k, f"--init: {k} new clusters of these images (the network's classes were "
                                       f"{'clusters' if src.kind == 'clusters' else 'labels'} without saved centres: "
                                       f"its class k is not this run's class k)")
    raise ConfigError(f"--init: the network is conditional ({k} classes); train it with --set conditional=true on "
                      f"data with those classes or --set clusters={k} on clusters of the images, or say "
                      f"--set conditional=false to drop them")


def _resumed(src: Source, data_labels: int) -> Decision:
    if not src.classes:
        return Decision("none")
    if src.kind == "data":
        if data_labels != src.classes:
            raise ConfigError(f"--resume: the run was trained on {src.classes} classes of its data, but the data now "
                              f"has {data_labels or 'no labels'}; resume on the run's own data")
        return Decision("data", src.classes)
    return Decision("clusters", src.classes, centres=src.centres, check_prior=src.prior)


def apply(decision: Decision, images: ImageSet, seed: int) -> tuple[Labels, ImageSet]:
    """(the run's classes, the images labelled by them)."""
    if decision.kind == "none":
        return Labels("none", 0, decision.why), dataclasses.replace(images, labels=None, label_size=0)
    k = decision.count
    if decision.kind == "data":
        labels = images.labels
    else:
        centres = np.asarray(decision.centres, np.float32) if decision.centres else fit_centres(images, k, seed)
        labels = assign(images, centres)
        images = with_labels(images, labels, k)
        decision = dataclasses.replace(decision, centres=tuple(tuple(float(v) for v in c) for c in centres))
    prior = ClassPrior.of_labels(labels, k, "labels").freqs
    if decision.check_prior:
        _check_fit(prior, decision.check_prior)
    return Labels(decision.kind, k, decision.why, decision.centres, prior), images


def _check_fit(prior, saved) -> None:
    moved = 0.5 * float(np.abs(np.asarray(prior) - np.asarray(saved)).sum())
    if moved > REFIT_SHARE or (np.asarray(prior) == 0).any() != (np.asarray(saved) == 0).any():
        raise DataError(f"--resume: these images do not fit the run's saved clusters (their class shares moved "
                        f"{moved:.0%} from the saved ones, at most {REFIT_SHARE:.0%}); resume with the run's own "
                        f"--data, data_count and seed")
