"""Every error leadgate raises on purpose, in one tree.

::

    LeadgateError
    ├── ConfigError                 the config file or the environment is wrong (start-up, reload)
    ├── UsageError                  a command line asks for what cannot be done (exit 2)
    ├── StoreError                  the decision store failed
    │   └── StoreUnavailable        it cannot be reached now; retry later (HTTP 503)
    └── RequestError                the request is wrong; carries the HTTP status (problem+json)
        ├── BadRequest              400: a malformed body or header
        ├── Unauthorized            401: no or unknown API key
        ├── Forbidden               403: the partner may not post to that campaign
        ├── NotFound                404: no such list, campaign, dead letter (admin API)
        │   └── UnknownLead         404: feedback on a lead that is unknown, not yours, too old
        ├── RequestTimeout          408: the body did not arrive within the body deadline
        ├── ReturnWindowOver        409: a return after the campaign's return window
        ├── IdempotencyInProgress   409: a request with this Idempotency-Key is being decided
        ├── PayloadTooLarge         413
        ├── UnsupportedMediaType    415
        ├── InvalidFields           422: lists every bad field (admin and feedback bodies)
        │   └── InvalidLead         422: the same, for a lead
        ├── IdempotencyConflict     422: the same Idempotency-Key with another body
        └── RateLimited             429: carries ``retry_after_s``

    ValueError
    ├── InvalidValue                an operator's value is not valid (erasure); names the field
    └── MissingCountryCode          a national phone number and no region to read it in
    OSError
    └── DestinationRefused          a webhook's address is not public and not allow-listed
    ImportError
    └── StaleBuild                  a module compiled by mypyc is older than its source

The last four keep the standard base a caller already expects (a normalizer raises
``ValueError``; aiohttp's connector only wraps an ``OSError`` from a resolver; ``StaleBuild``
is raised while ``gateway`` is imported).

Infrastructure errors (redis-py's, OS errors) are translated into ``StoreError`` at the storage
boundary and nowhere else; the web layer maps this tree to problem+json in one middleware.
Messages never quote personal data: they name the field and say why.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TypeVar

_E = TypeVar("_E", bound=BaseException)


def detached(error: _E) -> _E:
    """``error`` kept as a value (a batch item's answer), not raised again: without its
    traceback and the exceptions it was raised during or from. Their frames include the one
    that caught it, whose locals hold the list it is kept in: a reference cycle that keeps
    that list (a whole batch of leads) alive until a full garbage collection finds it
    (BENCHMARKS.md, "Garbage collection, again")."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


class LeadgateError(Exception):
    """Base of every leadgate error."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the configuration: where (``campaigns[2].caps[0].window``) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(LeadgateError):
    """The configuration is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class UsageError(LeadgateError):
    """A command's arguments or input files are not usable: the message says which and why,
    the command prints it and exits 2."""


class StoreError(LeadgateError):
    """The decision store failed in a way a retry will not fix by itself."""


class StoreUnavailable(StoreError):
    """The decision store cannot be reached right now; the request may be retried later.

    ``outcome_unknown``: the commands were sent but no reply came back (a timeout, a reset), so
    the store may have run them: a lead may have been accepted. Only a retry with the same
    Idempotency-Key can tell.

    ``deadline_s``: when the wait ended because the caller's own deadline passed (the event
    loop time of that deadline, ``storage.deadline``); None when the transport failed first.
    """

    retry_after_s = 1

    def __init__(
        self, detail: str, *, outcome_unknown: bool = False, deadline_s: float | None = None
    ) -> None:
        self.outcome_unknown = outcome_unknown
        self.deadline_s = deadline_s
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field of a lead: its path (``email``, ``leads/3/phone``) and why."""

    field: str
    message: str


class RequestError(LeadgateError):
    """A request leadgate refuses; rendered as RFC 9457 problem+json with ``status``."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BadRequest(RequestError):
    """400: a body that is not what its Content-Type says, a header out of its syntax."""


class Unauthorized(RequestError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"


class Forbidden(RequestError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(RequestError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class UnknownLead(NotFound):
    type_slug = "unknown-lead"
    title = "Unknown lead"


class RequestTimeout(RequestError):
    """408: the request's body did not arrive within ``server.body_timeout_s``."""

    status = 408
    title = "Request timeout"
    type_slug = "request-timeout"


class ReturnWindowOver(RequestError):
    status = 409
    title = "Return window over"
    type_slug = "return-window-over"


class FingerprintKeyNotHashed(RequestError):
    """409: a check or a ping while the current fingerprint key is not a ``sha256`` key: a
    hashed identifier cannot be matched against what posts leave (docs/configuration.md)."""

    status = 409
    title = "Hashed identifiers cannot be matched"
    type_slug = "fingerprint-key-not-hashed"


class IdempotencyInProgress(RequestError):
    """409: another request with the same Idempotency-Key holds its lease (it is being decided,
    or it crashed less than the lease ago): retry after ``retry_after_s``. Sold leads of a
    distributed campaign take this lease so that one lead id is never sold twice at once."""

    status = 409
    title = "A request with this Idempotency-Key is being decided"
    type_slug = "idempotency-in-progress"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(detail)


class PayloadTooLarge(RequestError):
    status = 413
    title = "Payload too large"
    type_slug = "payload-too-large"


class UnsupportedMediaType(RequestError):
    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


class InvalidFields(RequestError):
    """A request whose fields are not valid; the answer lists each field and why."""

    status = 422
    title = "Invalid request"
    type_slug = "invalid-request"

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        fields = ", ".join(p.field for p in problems)
        super().__init__(f"{len(problems)} invalid field(s): {fields}")


class InvalidLead(InvalidFields):
    title = "Invalid lead"
    type_slug = "invalid-lead"


class PingMismatch(InvalidFields):
    """422: a post naming a live ping is not the lead pinged: each differing field named."""

    title = "The lead is not the one pinged"
    type_slug = "ping-mismatch"


class IdempotencyConflict(RequestError):
    status = 422
    title = "Idempotency-Key reused with another body"
    type_slug = "idempotency-conflict"


class RateLimited(RequestError):
    status = 429
    title = "Too many requests"
    type_slug = "rate-limited"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(detail)


class PingLimit(RateLimited):
    """429: a partner's pings outnumber its posts that name one (``max_pings_per_post``)."""

    title = "Too many pings per post"
    type_slug = "ping-limit"


class InvalidValue(ValueError):
    """One field of an operator's request is not valid (an erasure's email or phone);
    ``field`` names it, the message says why and never quotes the value."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


class MissingCountryCode(ValueError):
    """A national number (no ``+CC``/``00CC``) and no usable default region to read it in."""


class DestinationRefused(OSError):
    """The destination address is private/loopback/reserved and not allow-listed."""

    def __init__(self, address: str) -> None:
        super().__init__(errno.EACCES, f"destination not allowed: {address} is not public")


class StaleBuild(ImportError):
    """A module compiled by mypyc (setup.py) whose source changed after it was compiled: its
    old extension would run instead of the new source (``gateway.build.check_compiled``)."""
