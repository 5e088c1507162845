"""Named crash points for the tests that prove the decision protocol survives a crash.

``LEADGATE_FAILPOINTS=after-person-reserve`` (``KNOWN`` lists them) makes the process die
with ``os._exit`` (as ``kill -9`` would: no cleanup, no answer) the first time it reaches that
point. Read once at
start from the environment mapping; empty in production, where ``hit`` is one set lookup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

KNOWN = frozenset(
    {
        "after-person-reserve",
        "after-decide",
        # A distributed campaign's sale protocol (decision.waterfall), after each step.
        "after-sale-claim",
        "after-sale-open",
        "after-sale",
        "after-waterfall",
        "after-sale-close",
    }
)


class Failpoints:
    __slots__ = ("_armed",)

    def __init__(self, armed: frozenset[str] = frozenset()) -> None:
        unknown = armed - KNOWN
        if unknown:
            raise ValueError(f"unknown failpoint(s): {', '.join(sorted(unknown))}")
        self._armed = armed

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Failpoints:
        raw = environ.get("LEADGATE_FAILPOINTS", "")
        return cls(frozenset(p.strip() for p in raw.split(",") if p.strip()))

    def hit(self, name: str) -> None:
        if name in self._armed:
            os._exit(137)
