"""``settle_heap``: what start-up built taken out of the garbage collector's sight."""

from __future__ import annotations

import gc

from gateway.config.model import Config
from gateway.leads.phone import prepare_region

#: Container objects allocated (less those freed) between two young-generation collections;
#: Python's default is 700. A process serving 64 requests at once holds several thousand
#: young objects that are all still in use, and a freed object lowers the count only while it
#: is above zero: at 700 the collector ran every ~17 single leads and spent 6-7 % of the CPU
#: (16 % with batches) walking live requests it could not free. Requests leave no reference
#: cycles (tests/web/test_no_cycles.py), so there is nothing for it to find on the hot path;
#: at 10,000 it runs on what start-up and rare paths leave, 1.5 % of the CPU (BENCHMARKS.md,
#: "Garbage collection, again"). A collection of 10,000 young objects pauses ~2-3 ms.
GEN0_THRESHOLD = 10_000


def settle_heap(config: Config | None = None) -> None:
    """Freeze what start-up built, once it is built: the config, the rule packs, the libraries
    and their tables (tens of thousands of long-lived objects). ``gc.freeze`` takes them out of
    the collector's sight; otherwise every full collection walks all of them again, 20-30 ms
    on a 2-vCPU VM during which every request in flight waits (BENCHMARKS.md, "Garbage
    collection"). What requests create later is collected as before.

    The young generation is collected every ``GEN0_THRESHOLD`` allocations rather than 700;
    the older generations' thresholds are Python's.

    Called again after a config reload: what was frozen is thawed and collected once (the
    replaced config's objects, if they hold cycles, are freed then), and what lives is frozen
    again.

    ``config``: its campaigns' phone regions are loaded first (libphonenumber reads a region's
    metadata on first use, and the phone fast path compiles its patterns: ``prepare_region``),
    so the first leads do not pay for it and the tables are frozen too.
    """
    if config is not None:
        for region in sorted({c.phone_region for c in config.campaigns.values()}):
            prepare_region(region)
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
