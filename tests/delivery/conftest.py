"""Delivery fixtures: ``crm``, a started local CRM receiver (see ``delivery/crm.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from delivery.crm import CRM


@pytest_asyncio.fixture
async def crm() -> AsyncIterator[CRM]:
    receiver = CRM()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
