"""The ``redis_cluster`` / ``cluster_url`` fixtures: a real, whole Redis Cluster that the
cluster tests can trust (3 primaries each with a replica, every slot served once, failover
that swaps roles, an empty cluster at the start of each test, no other Redis touched)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import redis
from cluster_support import SLOTS, RedisCluster, parse_cluster_nodes
from redis.crc import key_slot
from support import RedisServer

#: Keys whose hash tags spread over the three primaries (checked below, not assumed).
SPREAD = [f"lg:{{a:adv-{n}}}:probe" for n in range(12)]


def test_three_primaries_each_with_one_replica(redis_cluster: RedisCluster) -> None:
    primaries, replicas = redis_cluster.primaries(), redis_cluster.replicas()

    assert len(primaries) == 3
    assert len(replicas) == 3
    assert set(primaries) | set(replicas) == set(redis_cluster.addresses)
    assert {redis_cluster.role(a) for a in primaries} == {"master"}
    assert {redis_cluster.role(a) for a in replicas} == {"slave"}
    for primary in primaries:
        assert len(redis_cluster.replicas_of(primary)) == 1
    host, port = primaries[0]
    assert redis_cluster.url == f"redis+cluster://{host}:{port}"
    assert redis_cluster.problems() == []


def test_every_node_sees_all_slots_served_by_exactly_one_primary(
    redis_cluster: RedisCluster,
) -> None:
    for address in redis_cluster.addresses:
        views = parse_cluster_nodes(redis_cluster.command(address, "CLUSTER", "NODES"))
        served = sorted(
            slot
            for view in views
            if view.is_primary
            for first, last in view.slots
            for slot in range(first, last + 1)
        )
        assert served == list(range(SLOTS)), f"{address} sees gaps or overlaps"


def test_a_key_is_served_by_its_slots_primary_and_moved_elsewhere(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    cluster = redis_cluster
    owners = {key: cluster.primary_for(key) for key in SPREAD}
    assert set(owners.values()) == set(cluster.primaries())  # the probes reach every primary

    for key, owner in owners.items():
        with cluster.client(owner) as client:
            client.set(key, "1")
        for other in set(cluster.primaries()) - {owner}:
            with (
                cluster.client(other) as client,
                pytest.raises(redis.exceptions.MovedError) as moved,
            ):
                client.get(key)
            assert (moved.value.slot_id, moved.value.port) == (key_slot(key.encode()), owner[1])

    assert cluster.keys_everywhere() == sorted(SPREAD)
    assert {a: sorted(k) for a, k in cluster.keys_by_primary().items()} == {
        p: sorted(k for k, o in owners.items() if o == p) for p in cluster.primaries()
    }


def test_a_failover_swaps_a_primary_and_its_replica_and_keeps_the_data(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    key = SPREAD[0]
    primary = redis_cluster.primary_for(key)
    with redis_cluster.client(primary) as client:
        client.set(key, "kept")
    assert redis_cluster.command(primary, "WAIT", 1, 5000) == "1"  # the replica has it

    promoted = redis_cluster.failover(primary)
    try:
        assert (redis_cluster.role(promoted), redis_cluster.role(primary)) == ("master", "slave")
        assert redis_cluster.primary_for(key) == promoted
        assert redis_cluster.replicas_of(promoted) == [primary]
        assert primary not in redis_cluster.primaries()
        with redis_cluster.client(promoted) as client:
            assert client.get(key) == "kept"
        assert redis_cluster.problems() == []
    finally:
        # Leave the session's cluster as it was found for the tests that follow.
        redis_cluster.failover(promoted)
    assert redis_cluster.primary_for(key) == primary


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_starts_with_an_empty_cluster(
    turn: str, redis_cluster: RedisCluster, cluster_url: str
) -> None:
    # Whichever turn runs second finds what the first wrote flushed, replicas included.
    assert redis_cluster.keys_everywhere() == []
    for address in redis_cluster.replicas():
        with redis_cluster.client(address) as client:
            assert client.dbsize() == 0
    for key in SPREAD:
        with redis_cluster.client(redis_cluster.primary_for(key)) as client:
            client.set(key, turn)
    assert len(redis_cluster.keys_everywhere()) == len(SPREAD)


def test_emptying_the_cluster_leaves_every_other_redis_alone(
    redis_cluster: RedisCluster,
    spare_redis: Callable[[], RedisServer],
    request: pytest.FixtureRequest,
) -> None:
    other = spare_redis()
    other.start()
    with other.client() as client:
        client.set("not-the-clusters", "1")

    url = request.getfixturevalue("cluster_url")

    assert url == redis_cluster.url
    with other.client() as client:
        assert client.get("not-the-clusters") == "1"


def test_stop_is_idempotent_and_ends_every_node(tmp_path_factory: pytest.TempPathFactory) -> None:
    cluster = RedisCluster(tmp_path_factory.mktemp("short-lived-cluster"))
    cluster.start()
    assert cluster.running

    cluster.stop()
    cluster.stop()

    assert not cluster.running
    for host, port in cluster.addresses:
        # A bare connect: redis-py would retry a refused connection with backoff.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=1).close()
