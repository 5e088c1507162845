"""Fixtures of the decision tests: the stores a distributed campaign is sold on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support import StoreView

from gateway.storage.base import Store
from gateway.storage.memory import MemoryStore
from gateway.storage.redis import RedisStore


@pytest_asyncio.fixture(params=["embedded", "redis", "redis x3", "cluster", "cluster x3"])
async def memories(request: pytest.FixtureRequest) -> AsyncIterator[tuple[list[Store], StoreView]]:
    """The stores of one test and a view of them: embedded, one Redis, or the real 3-primary
    Redis Cluster; ``x3``: three gateway replicas (stores) sharing it."""
    stores: list[Store]
    url = None
    if request.param == "embedded":
        stores = [MemoryStore()]
    else:
        fixture = "cluster_url" if request.param.startswith("cluster") else "redis_url"
        url = request.getfixturevalue(fixture)
        stores = [RedisStore(url) for _ in range(3 if request.param.endswith("x3") else 1)]
    try:
        yield stores, StoreView(stores[0], url)
    finally:
        for store in stores:
            await store.close()
