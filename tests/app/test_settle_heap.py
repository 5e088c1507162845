"""``settle_heap``: what start-up built is frozen out of the collector's full passes, with the
campaigns' phone regions loaded first. Run in a fresh interpreter (freezing the test process's
heap would change every later test's collections)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"


def test_start_up_objects_are_frozen_phone_regions_loaded_first_and_a_reload_thaws_them() -> None:
    """Also: live young objects (requests in flight) do not set the collector off."""
    script = textwrap.dedent(
        f"""
        import gc, json, weakref
        import phonenumbers
        from gateway.config.load import load_config
        from gateway.app.heap import GEN0_THRESHOLD, settle_heap

        config = load_config({str(EXAMPLE)!r})
        regions = sorted({{c.phone_region for c in config.campaigns.values()}})
        before = gc.get_freeze_count()
        settle_heap(config)
        gc.collect()
        tracked_after = len(gc.get_objects())

        # Requests in flight: thousands of live young objects, which the default threshold
        # (700) would have the collector walk again and again.
        collections = []
        gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
        in_flight = [[] for _ in range(GEN0_THRESHOLD // 2)]
        del in_flight
        in_flight = [[] for _ in range(GEN0_THRESHOLD // 2)]
        collections_in_flight = len(collections)
        gc.callbacks.clear()

        # A reload: what the old config held in cycles is freed by the next settle_heap.
        class Node:
            pass

        node = Node()
        node.self = node
        gone = weakref.ref(node)
        settle_heap(config)
        del node
        gc.collect()
        kept_while_frozen = gone() is not None
        settle_heap(config)
        print(json.dumps({{
            "regions": regions,
            "loaded": [r for r in regions if r in phonenumbers.PhoneMetadata._region_metadata],
            "frozen_before": before,
            "frozen": gc.get_freeze_count(),
            "tracked_after": tracked_after,
            "collections_in_flight": collections_in_flight,
            "kept_while_frozen": kept_while_frozen,
            "freed_after_reload": gone() is None,
            "frozen_after_reload": gc.get_freeze_count(),
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    found = json.loads(out)
    assert found["regions"], "the example config has campaigns"
    assert found["loaded"] == found["regions"]
    assert found["frozen_before"] == 0
    assert found["frozen"] > 10_000  # the config, the libraries' modules and tables
    # Left for full collections: what settle_heap's own frame still held, a few hundred.
    assert found["tracked_after"] < found["frozen"] / 10
    assert found["collections_in_flight"] == 0
    assert found["kept_while_frozen"]
    assert found["freed_after_reload"]
    assert found["frozen_after_reload"] > 10_000
