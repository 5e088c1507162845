"""Signatures checked by the Standard Webhooks reference library, not by our own code."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from delivery.records import OTHER_SECRET, SECRET, SECRET_ENV
from gateway.config.delivery import SecretRef, webhook_keys
from gateway.delivery.signing import Signer, signature, webhook_headers
from gateway.errors import ConfigError

BODY = b'{"type":"lead.accepted","data":{"email":"jeanne@example.org"}}'
REF = SecretRef(env=SECRET_ENV, path="advertisers[0].delivery")


def keys(*secrets: str) -> tuple[bytes, ...]:
    return webhook_keys(REF, {SECRET_ENV: " ".join(secrets)})


def test_the_reference_library_verifies_our_signature() -> None:
    headers = webhook_headers(keys(SECRET), "lead-1", int(time.time()), BODY)
    assert Webhook(SECRET).verify(BODY, headers)["data"]["email"] == "jeanne@example.org"


def test_our_signature_is_the_reference_librarys() -> None:
    at = 1_614_265_330
    ours = signature(keys(SECRET), "msg_p5jXN8AQM9LWM0D4loKWxJek", at, BODY)
    theirs = Webhook(SECRET).sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(at, UTC), BODY.decode()
    )
    assert ours == theirs


def test_during_a_rotation_both_secrets_verify() -> None:
    headers = webhook_headers(keys(SECRET, OTHER_SECRET), "lead-1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(s.startswith("v1,") for s in headers["webhook-signature"].split(" "))
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OTHER_SECRET).verify(BODY, headers)
    unknown = "whsec_" + base64.b64encode(b"another secret entirely, 32 byte").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(unknown).verify(BODY, headers)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY.replace(b"jeanne", b"jeanot")}, "a changed body"),
        ({"msg_id": "lead-2"}, "another id"),
        ({"age_s": 3600}, "an old timestamp"),
    ],
)
def test_a_tampered_or_stale_request_fails(change: dict[str, object], reason: str) -> None:
    age = int(str(change.get("age_s", 0)))
    headers = webhook_headers(keys(SECRET), "lead-1", int(time.time()) - age, BODY)
    if "msg_id" in change:
        headers["webhook-id"] = str(change["msg_id"])
    body = change.get("body", BODY)
    assert isinstance(body, bytes)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize(
    "value", ["", "hunter2hunter2", "whsec_", "whsec_not*base64", f"{SECRET} oops", "Bearer x"]
)
def test_a_malformed_secret_is_refused_without_showing_it(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        webhook_keys(REF, {SECRET_ENV: value})
    assert caught.value.issues[0].path == SECRET_ENV
    if len(value) > len("whsec_"):  # long enough not to be a word of the message
        assert value not in str(caught.value)


def test_a_signer_signs_like_the_functions_and_the_reference_library() -> None:
    at = int(time.time())
    signer = Signer(keys(SECRET, OTHER_SECRET))
    for n in range(3):  # the prepared key state is copied, never consumed
        body = BODY + b" " * n
        headers = signer.headers(f"lead-{n}", at, body)
        assert headers == webhook_headers(keys(SECRET, OTHER_SECRET), f"lead-{n}", at, body)
        Webhook(SECRET).verify(body, headers)
        Webhook(OTHER_SECRET).verify(body, headers)
    assert not Signer(())
