"""What a metric is: one object with its name, what it needs, how the evaluator's pass computes it,
and how it is logged, plotted and shown. Each metric's module defines one (a subclass of
:class:`Metric`); ``metrics/registry.py`` lists them, and every other part of pggan (the evaluator,
``pggan metrics``, metrics during training, the plot, TensorBoard) asks the registry.

The evaluator (metrics/evaluate.py) generates fakes ``0 .. num - 1`` once, in batches, and hands every
batch to each metric of the pass (``add``); then each metric's ``finish`` forms its value. Both run on
every rank of a multi-process evaluation in the same order (they may take part in collectives); the
value counts on rank 0.
"""
from __future__ import annotations


class Metric:
    name = ""                   # as in --metrics and metric-<name>.jsonl
    title = ""                  # the plot's axis label
    label = ""                  # the first column of `pggan metrics`' lines
    in_pass = True              # computed from the shared fakes 0 .. num - 1 (else from images of its own)
    min_resolution = 0          # below this the metric cannot be computed (skipped during training)
    extra_keys: tuple = ()      # result keys saved beside its value in metric-<name>.jsonl

    def check(self, opts) -> None:
        """Raise UsageError for options it cannot run with."""

    def networks(self, opts) -> set:
        """The feature networks it needs: 'inception', 'vgg16'."""
        return set()

    def matrices(self, opts) -> set:
        """Feature kinds whose whole fake and real matrices it needs (kept on rank 0)."""
        return set()

    def own_images(self, opts) -> int:
        """Fakes it generates beyond the pass's ``num`` (for the progress bar)."""
        return 0

    def start(self, ctx):
        """The state the pass's batches are added to."""
        return None

    def add(self, state, batch) -> None:
        """One batch of the pass (``batch.x``: this rank's fakes; ``batch.feature(kind)``, ``batch.gathered()``)."""

    def finish(self, state, ctx):
        """The JSON-ready value (None on ranks other than 0); may add ``extra_keys`` to ``ctx.result``."""
        raise NotImplementedError

    # ---- shown ------------------------------------------------------------------------------------
    def curves(self, value) -> dict:
        """{curve: number} for the plot."""
        return {self.name: float(value)}

    def scalars(self, value) -> dict:
        """{tag: number} for TensorBoard (under Metrics/)."""
        return self.curves(value)

    def lines(self, result: dict) -> list[str]:
        """Lines of `pggan metrics`' report."""
        return [f"{self.label:<10}{result[self.name]:.3f}"]

    def short(self, value) -> str:
        """Its part of a one-line summary."""
        return f"{self.name} {value:.3f}"
