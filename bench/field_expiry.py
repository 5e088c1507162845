"""``bench.decide_cost --field-expiry``: what a decision would cost Redis if each dedup mark
expired on its own (Redis 7.4's per-field expiry): ``field_expiry.lua``, a measurement beside
``decide.lua``, never the gateway's script. The gateway's own plan makes each lead's request;
this turns it into that script's arguments, one hash per dedup check where ``decide.lua``
reads one per generation. Needs a Redis of 7.4 or later (``HPEXPIRE``)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from gateway.decision.model import DecisionRequest
from gateway.storage.redis import index_arguments

SCRIPT = (Path(__file__).resolve().parent / "field_expiry.lua").read_text()
#: Leads per script call, as the store's (``DECIDE_LEADS_PER_CALL``).
LEADS_PER_CALL = 100


def mark_hash(generation_hash: str) -> str:
    """The one hash of a mark's scope, fingerprint key and bucket, from the name of its
    generation's hash (``keys.seen``: ``<prefix>:<key id>:g<generation>:<bucket>``)."""
    head, generation, bucket = generation_hash.rsplit(":", 2)
    if not generation.startswith("g"):
        raise ValueError(f"not a generation's hash: {generation_hash!r}")
    return f"{head}:x:{bucket}"


def lead_parts(rq: DecisionRequest) -> tuple[list[str], list[str | bytes | int]]:
    """One bench lead's KEYS and ARGV for ``field_expiry.lua`` (its header says which)."""
    if rq.idempotency is not None or rq.hold is not None or rq.index is None:
        raise ValueError("the field-expiry measurement takes bench leads only")
    now = rq.now_ms
    keys = [rq.stream_key, *(mark_hash(check.keys[0]) for check in rq.dedup)]
    numbers: list[int] = [len(rq.dedup), len(rq.caps)]
    args: list[str | bytes | int] = []
    for check in rq.dedup:
        numbers += (check.window_ms, check.retention_ms)
        args += (check.reason, check.field)
    for cap in rq.caps:
        keys.append(cap.key)
        numbers += (cap.limit, cap.span_ms)
        args += (cap.reason, int(cap.rolling))
    index = rq.index
    keys += (index.key, index.routes)
    ttl_ms, index_args = index_arguments(index, now)
    numbers.append(ttl_ms)
    args += index_args
    packed = struct.pack(f"<{len(numbers)}d", *numbers)
    return keys, [now, rq.lead_id, rq.payload, packed, *args]


def commands(
    sha: str, requests: Sequence[DecisionRequest], hsetex: bool, seconds: bool = False
) -> list[tuple[object, ...]]:
    """``EVALSHA`` of the script for ``requests``, ``LEADS_PER_CALL`` leads a call; a mark
    written with ``HSETEX`` (Redis 8.0) or else ``HSET`` and ``HPEXPIRE`` (7.4), its value in
    epoch ms, or in seconds with ``seconds``."""
    out: list[tuple[object, ...]] = []
    for start in range(0, len(requests), LEADS_PER_CALL):
        chunk = [lead_parts(rq) for rq in requests[start : start + LEADS_PER_CALL]]
        keys: list[str] = []
        args: list[str | bytes | int] = [len(chunk), int(hsetex), 1000 if seconds else 1]
        for lead_keys, lead_args in chunk:
            keys += lead_keys
            args += (len(lead_keys), len(lead_args), *lead_args)
        out.append(("EVALSHA", sha, len(keys), *keys, *args))
    return out
