"""``body.media_type``: what each ``Content-Type`` header means, read as aiohttp reads it."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.web.body import media_type


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        (None, ""),
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSON", "application/json"),
        (" application/json ", "application/json"),
        ("application/problem+json", "application/problem+json"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("text/plain", "text/plain"),
        ("", "application/octet-stream"),
    ],
)
def test_the_media_type_sent(sent: str | None, meant: str) -> None:
    headers = {} if sent is None else {"Content-Type": sent}
    assert media_type(make_mocked_request("POST", "/v1/leads", headers=headers)) == meant
