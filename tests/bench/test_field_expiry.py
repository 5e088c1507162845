"""``bench.decide_cost --field-expiry``: the measurement of what a decision would cost Redis
if each dedup mark expired on its own (``bench/field_expiry.lua``, Redis 7.4's per-field
expiry). Its arguments are built from the gateway's own plan; it refuses a Redis without
``HPEXPIRE``; on a Redis that has it (``LEADGATE_TEST_REDIS_SERVER_74``: a redis-server of
7.4 or later; Debian's is 7.0, so CI skips that part) it decides as ``decide.lua`` does."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import field_expiry
from bench.decide_cost import BenchLeads
from bench.scratch_redis import scratch_redis
from gateway.storage.redis import parse_version

ROOT = Path(__file__).resolve().parents[2]
NEW_REDIS = os.environ.get("LEADGATE_TEST_REDIS_SERVER_74", "")


def _server_version(server: str) -> tuple[int, ...]:
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=True)
    return parse_version(out.stdout.split("v=", 1)[1].split()[0])


def test_a_mark_has_one_hash_per_scope_key_and_bucket_whatever_its_generation() -> None:
    assert field_expiry.mark_hash("lg:{a:adv}:seen:a:b1:g812:0a1f") == "lg:{a:adv}:seen:a:b1:x:0a1f"
    with pytest.raises(ValueError, match="generation"):
        field_expiry.mark_hash("lg:{a:adv}:seen:a:b1:812:0a1f")


def test_a_bench_lead_s_arguments_come_from_the_gateway_s_plan() -> None:
    (rq,) = BenchLeads().requests(range(1), time.time())
    keys, args = field_expiry.lead_parts(rq)

    assert rq.index is not None
    checks, caps = len(rq.dedup), len(rq.caps)
    assert (checks, caps) == (4, 2)  # 2 identities x 2 scopes, 2 calendar caps
    assert keys[0] == rq.stream_key
    # One hash a check, in the bucket of its current generation's hash.
    assert keys[1 : 1 + checks] == [field_expiry.mark_hash(c.keys[0]) for c in rq.dedup]
    assert all(len(c.keys) > 1 for c in rq.dedup)  # decide.lua reads several generations
    assert keys[1 + checks : 1 + checks + caps] == [cap.key for cap in rq.caps]
    assert keys[-2:] == [rq.index.key, rq.index.routes]
    now, lead_id, payload, packed = args[:4]
    assert (now, lead_id, payload) == (rq.now_ms, rq.lead_id, rq.payload)
    assert isinstance(packed, bytes)
    numbers = struct.unpack(f"<{len(packed) // 8}d", packed)
    assert numbers[:2] == (checks, caps)
    assert numbers[2 : 2 + 2 * checks : 2] == tuple(c.window_ms for c in rq.dedup)
    assert numbers[3 : 3 + 2 * checks : 2] == tuple(c.retention_ms for c in rq.dedup)
    assert args[4 : 4 + 2 * checks] == [x for c in rq.dedup for x in (c.reason, c.field)]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
def test_a_redis_without_per_field_expiry_is_refused_with_the_reason() -> None:
    if _server_version("redis-server") >= (7, 4):
        pytest.skip("this redis-server has per-field expiry")
    done = subprocess.run(
        [sys.executable, "-m", "bench.decide_cost", "--leads", "10", "--field-expiry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "needs Redis 7.4 or later (HPEXPIRE)" in done.stderr


@pytest.mark.skipif(
    not NEW_REDIS, reason="LEADGATE_TEST_REDIS_SERVER_74 names no redis-server of 7.4 or later"
)
@pytest.mark.parametrize(
    ("hsetex", "seconds"),
    [(False, False), (True, False), (True, True)],
    ids=["hset-hpexpire", "hsetex", "hsetex-seconds"],
)
def test_the_measured_script_decides_as_decide_lua(hsetex: bool, seconds: bool) -> None:
    version = _server_version(NEW_REDIS)
    assert version >= (7, 4), f"{NEW_REDIS} is {version}"
    if hsetex and version < (8, 0):
        pytest.skip("HSETEX is Redis 8.0's")
    bench = BenchLeads()
    with scratch_redis("leadgate-test-field-expiry-", server=NEW_REDIS) as (_, client):
        sha = client.script_load(field_expiry.SCRIPT)

        def decide(people: range) -> list[list[bytes]]:
            requests = bench.requests(people, time.time())
            replies: list[list[bytes]] = []
            for command in field_expiry.commands(sha, requests, hsetex, seconds):
                replies += client.execute_command(*command)  # type: ignore[no-untyped-call]
            return replies

        first = decide(range(150))
        assert [r[1] for r in first] == [b"accepted"] * 150
        # The same people again: each scope reports its duplicate once.
        again = decide(range(140, 160))
        assert [r[1] for r in again[:10]] == [b"duplicate"] * 10
        assert {r[2] for r in again[:10]} == {b"duplicate.advertiser,duplicate.campaign"}
        assert [r[1] for r in again[10:]] == [b"accepted"] * 10
        # Each mark expires on its own, after its rule's retention; the hash itself never.
        (rq,) = bench.requests(range(1), time.time())
        for check in rq.dedup:
            key = field_expiry.mark_hash(check.keys[0])
            (ttl,) = client.execute_command(  # type: ignore[no-untyped-call]
                "HPTTL", key, "FIELDS", 1, check.field
            )
            assert check.retention_ms - 60_000 < ttl <= check.retention_ms
            assert client.pttl(key) == -1
            (at,) = client.hmget(key, [check.field])
            assert at is not None
            assert abs(int(at) * (1000 if seconds else 1) - rq.now_ms) < 60_000
        assert client.xlen(rq.stream_key) == 160
