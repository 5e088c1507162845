"""The suite's Redis is the one asked for: ``make test-redis8`` sets
``LEADGATE_TEST_EXPECT_REDIS`` (a version prefix, ``8.``) so that a PATH that still finds
Debian's 7.0 fails the run instead of testing 7.0 twice: the session's server and a
cluster's nodes are checked."""

from __future__ import annotations

import os

import pytest
import redis
from cluster_support import RedisCluster
from support import RedisServer

EXPECTED = os.environ.get("LEADGATE_TEST_EXPECT_REDIS", "")


def _version(info: dict[str, object]) -> str:
    return str(info["redis_version"])


@pytest.mark.skipif(not EXPECTED, reason="LEADGATE_TEST_EXPECT_REDIS is not set")
def test_the_session_server_is_the_expected_version(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        assert _version(client.info("server")).startswith(EXPECTED)


@pytest.mark.skipif(not EXPECTED, reason="LEADGATE_TEST_EXPECT_REDIS is not set")
def test_the_cluster_nodes_are_the_expected_version(redis_cluster: RedisCluster) -> None:
    for host, port in redis_cluster.addresses:
        with redis.Redis(host=host, port=port) as client:
            assert _version(client.info("server")).startswith(EXPECTED)
