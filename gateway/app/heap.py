"""``settle_heap``: what start-up built taken out of the garbage collector's sight."""

from __future__ import annotations

import gc

import phonenumbers

from gateway.config.model import Config


def settle_heap(config: Config | None = None) -> None:
    """Freeze what start-up built, once it is built: the config, the rule packs, the libraries
    and their tables (tens of thousands of long-lived objects). ``gc.freeze`` takes them out of
    the collector's sight; otherwise every full collection walks all of them again, 20-30 ms
    on a 2-vCPU VM during which every request in flight waits (BENCHMARKS.md, "Garbage
    collection"). What requests create later is collected as before.

    Called again after a config reload: what was frozen is thawed and collected once (the
    replaced config's objects, if they hold cycles, are freed then), and what lives is frozen
    again.

    ``config``: its campaigns' phone regions are loaded first (libphonenumber reads a region's
    metadata on first use), so the first leads do not pay for it and the tables are frozen too.
    """
    if config is not None:
        for region in sorted({c.phone_region for c in config.campaigns.values()}):
            phonenumbers.PhoneMetadata.metadata_for_region(region)
    gc.unfreeze()
    gc.collect()
    gc.freeze()
