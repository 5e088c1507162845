"""The Lua scripts, loaded once from the package with ``importlib.resources``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _load(name: str) -> Script:
    source = resources.files("gateway.storage").joinpath(f"lua/{name}.lua").read_text("utf-8")
    # The server's SHA1 of the body; used as an identifier, not for security.
    sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    return Script(name, source, sha)


DECIDE = _load("decide")
PERSON_RESERVE = _load("person_reserve")
PERSON_RELEASE = _load("person_release")
SUPPRESS_CHANGE = _load("suppress_change")
FEEDBACK = _load("feedback")
ALL = (DECIDE, PERSON_RESERVE, PERSON_RELEASE, SUPPRESS_CHANGE, FEEDBACK)
