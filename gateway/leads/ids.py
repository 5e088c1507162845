"""Lead ids: RFC 9562 UUIDv7 strings, time-ordered so ids sort like arrival and index well."""

from __future__ import annotations

import uuid_utils

from gateway.types import LeadId


def new_lead_id() -> LeadId:
    """A fresh UUIDv7 in canonical text form (``0190d7c4-…``, 36 characters)."""
    return LeadId(str(uuid_utils.uuid7()))
