"""How the cluster pipeline routes: URLs, the slot of each kind of command, and a slot that
moves under a running pipeline (``MOVED`` is followed, the command runs once)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from cluster_support import Address, RedisCluster
from redis.crc import key_slot

from gateway.storage.cluster import ClusterPipeline, command_slot, is_cluster_url, node_url


def test_cluster_urls() -> None:
    assert is_cluster_url("redis+cluster://10.0.0.1:7000")
    assert is_cluster_url("rediss+cluster://h:7000")
    assert not is_cluster_url("redis://10.0.0.1:6379")
    assert node_url("redis+cluster://:pw@seed:7000/0?x=1", ("10.0.0.2", 7001)) == (
        "redis://:pw@10.0.0.2:7001/0?x=1"
    )
    assert node_url("rediss+cluster://seed:7000", ("::1", 7001)) == "rediss://[::1]:7001"


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("GET", "lg:{a:acme}:x"), "lg:{a:acme}:x"),
        (("EVALSHA", "sha", 2, "lg:{p:k1.x}:net", "lg:{p:k1.x}:press", 1), "lg:{p:k1.x}:net"),
        (("UNLINK", b"lg:{a:nova}:seen"), "lg:{a:nova}:seen"),
    ],
)
def test_a_command_goes_to_its_first_keys_slot(command: tuple[object, ...], key: str) -> None:
    assert command_slot(command) == key_slot(key.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [("PING",), ("SCRIPT", "LOAD", "x"), ("EVAL", "s", 0)])
def test_keyless_commands_have_no_slot(command: tuple[object, ...]) -> None:
    assert command_slot(command) is None  # type: ignore[arg-type]


def call(node: Address, *args: str | int) -> Any:
    """One command to one node, its reply as redis-py gives it."""
    with redis.Redis(*node) as client:
        return client.execute_command(*args)


def move_slot(cluster: RedisCluster, slot: int, source: Address, target: Address) -> None:
    """Migrate ``slot`` and its keys from ``source`` to ``target``, as ``redis-cli --cluster
    reshard`` does."""
    ids = {node: call(node, "CLUSTER", "MYID").decode() for node in (source, target)}
    call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    for key in call(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
        call(source, "MIGRATE", target[0], target[1], key, 0, 5000)
    for node in cluster.primaries():
        call(node, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    cluster.wait_settled(30, "after moving a slot")


async def test_a_moved_slot_is_followed(cluster_url: str, redis_cluster: RedisCluster) -> None:
    pipe = ClusterPipeline(cluster_url, 2.0, decode_responses=True)
    key = "lg:{a:moving}:counter"
    try:
        assert await pipe.execute([("INCR", key)]) == [1]
        source = redis_cluster.primary_for(key)
        target = next(p for p in redis_cluster.primaries() if p != source)
        move_slot(redis_cluster, key_slot(key.encode()), source, target)
        # The pipeline still believes the old owner: MOVED, the map read again, sent on.
        assert await pipe.execute([("INCR", key), ("GET", key)]) == [2, "2"]
        assert redis_cluster.primary_for(key) == target
    finally:
        await pipe.close()


async def test_connect_all_opens_every_primarys_connections(
    cluster_url: str, redis_cluster: RedisCluster
) -> None:
    opened: list[object] = []

    async def check(conn: object) -> None:
        opened.append(conn)

    pipe = ClusterPipeline(cluster_url, 2.0, decode_responses=True, connections=2, on_connect=check)
    try:
        await pipe.connect_all()
        # The slot map's read opened one connection of the node it asked; then every idle one.
        assert len(opened) == 2 * len(redis_cluster.primaries())
        before = len(opened)
        keys = [f"lg:{{a:spread-{n}}}:counter" for n in range(30)]
        assert await pipe.execute([("INCR", k) for k in keys]) == [1] * 30
        assert len(opened) == before  # the commands found them open
    finally:
        await pipe.close()
