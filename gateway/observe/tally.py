"""Counts and observations kept as plain numbers on the hot path, added to prometheus-client's
metrics at the next flush.

A prometheus-client counter's ``inc`` is three Python calls and a lock (with ``--workers N``,
also a write to its memory-mapped file), a histogram's ``observe`` a walk of its buckets and
two of those; a single lead makes six or more of them. A ``Tally`` is one addition to an
attribute, a ``Spread`` one bisection and two additions. ``Tallies.flush`` adds what they
gathered to the metrics' own children: the ``Observer`` flushes before every exposition,
which is what reads them (``/metrics`` is exact). A process's in-memory metrics die with it
anyway; with ``--workers N``, whose metrics files outlive their process and are read by
another, every addition goes to the metric at once (``Tallies(direct=True)``).

Only the event loop's thread records and flushes (the gateway's hot path has no other).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any


class Tally:
    """What a counter's child (``child``) is owed: ``n``, added to by the hot path itself
    (``tally.n += 1``: no call)."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0


class DirectTally(Tally):
    """A ``Tally`` whose additions go to its child at once (``Tallies(direct=True)``)."""

    __slots__ = ()

    def __init__(self, child: Any) -> None:  # no ``n`` to start from: it is always 0
        self.child = child

    @property
    def n(self) -> int:
        return 0

    @n.setter
    def n(self, value: int) -> None:
        if value:
            self.child.inc(value)


class Spread:
    """A histogram child's observations since the last flush: a count per bucket (its upper
    bounds, ``+Inf`` last, as the histogram has them) and their sum."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any, bounds: Sequence[float]) -> None:
        self.child = child
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bucket whose upper bound is at least ``value``, as prometheus-client puts it.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class DirectSpread(Spread):
    """A ``Spread`` whose observations go to its child at once (``Tallies(direct=True)``)."""

    __slots__ = ()

    def observe(self, value: float) -> None:
        self.child.observe(value)


class Tallies:
    """Every ``Tally`` and ``Spread`` of one ``Observer``, flushed together.

    ``direct``: each addition goes to the metric at once, nothing waits for a flush. For
    ``--workers N``, whose metrics live in files that outlive their process: a worker
    killed (``kill -9``, the OOM killer) keeps every count it made, as it did before tallies
    (``tests/app/test_workers_and_reload.py``), and a scrape served by another worker sees
    them at once."""

    def __init__(self, *, direct: bool = False) -> None:
        self.direct = direct
        self._tallies: list[Tally] = []
        self._spreads: list[Spread] = []

    def tally(self, child: Any) -> Tally:
        if self.direct:
            return DirectTally(child)
        tally = Tally(child)
        self._tallies.append(tally)
        return tally

    def spread(self, child: Any) -> Spread:
        """A ``Spread`` of ``child``: a labelled child of a histogram, or one without labels.
        (Its bounds and values are the histogram's private ``_upper_bounds``, ``_sum`` and
        ``_buckets``: see ``flush``.)"""
        if self.direct:
            return DirectSpread(child, child._upper_bounds)
        spread = Spread(child, child._upper_bounds)
        self._spreads.append(spread)
        return spread

    def flush(self) -> None:
        """Add everything gathered to the metrics, and start again from zero."""
        for tally in self._tallies:
            if tally.n:
                n, tally.n = tally.n, 0
                tally.child.inc(n)
        for spread in self._spreads:
            counts = spread.counts
            if not any(counts):
                continue
            # A histogram has no public call adding many observations at once; these are the
            # values its own ``observe`` adds to (``tests/observe/test_tally.py`` holds the
            # exposition to the one ``observe`` by ``observe`` gives).
            child = spread.child
            child._sum.inc(spread.total)
            for i, n in enumerate(counts):
                if n:
                    child._buckets[i].inc(n)
            spread.counts = [0] * len(counts)
            spread.total = 0.0
