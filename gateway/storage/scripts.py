"""The Lua scripts, loaded once from their package with ``importlib.resources``
(the decision's here, the delivery queue's through ``load``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

#: Script reloads one call may do before a NOSCRIPT is an error: more than one, because on a
#: cluster in the middle of a failover the scripts may reach the old primary while the
#: commands go on to the new one.
RELOADS = 3

#: What ``decide.lua`` and ``campaign_reserve.lua`` add to an expiry they must only ever move
#: later when they raise it (their own constant of that name; a test keeps them equal): the
#: next writes then find it long enough and leave it.
EXPIRY_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def load(name: str, package: str = "gateway.storage") -> Script:
    """``<package>/lua/<name>.lua``, with the SHA1 Redis will know it by."""
    source = resources.files(package).joinpath(f"lua/{name}.lua").read_text("utf-8")
    # The server's SHA1 of the body; used as an identifier, not for security.
    sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    return Script(name, source, sha)


DECIDE = load("decide")
PERSON_RESERVE = load("person_reserve")
PERSON_RELEASE = load("person_release")
SUPPRESS_CHANGE = load("suppress_change")
FEEDBACK = load("feedback")
CAMPAIGN_RESERVE = load("campaign_reserve")
CAMPAIGN_CLOSE = load("campaign_close")
ALL = (
    DECIDE,
    PERSON_RESERVE,
    PERSON_RELEASE,
    SUPPRESS_CHANGE,
    FEEDBACK,
    CAMPAIGN_RESERVE,
    CAMPAIGN_CLOSE,
)
