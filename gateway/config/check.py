"""The config commands' logic: ``leadgate check-config`` and ``leadgate hash-key``.

Kept apart from the CLI wiring so tests call them with a path and a ``StringIO``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import TextIO

from gateway.config.environment import Environment
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.errors import ConfigError, ConfigIssue


def check_config(path: str, out: TextIO, environ: Mapping[str, str] | None = None) -> int:
    """Validate the file at ``path`` and the ``LEADGATE_*`` variables of ``environ`` (the CLI
    passes the process's; ``None``: the file alone) with the very checks ``serve`` runs at
    start, so what this calls OK, ``serve`` does not refuse. Print a one-line summary, or
    every problem one per line as ``path: message`` (a variable's name for the environment,
    never its value). Returns the exit code: 0 valid, 1 invalid or unreadable."""
    issues: list[ConfigIssue] = []
    config: Config | None = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        issues += exc.issues
    if environ is not None:
        try:
            Environment.from_environ(environ)
        except ConfigError as exc:
            issues += exc.issues
    if issues or config is None:
        for issue in issues:
            # A problem with the whole document has no path inside it: name the file instead.
            print(f"{issue.path or path}: {issue.message}", file=out)
        return 1
    counts = (
        _count(len(config.partners), "partner"),
        _count(len(config.campaigns), "campaign"),
        _count(len(config.advertisers), "advertiser"),
        _count(len(config.channels), "channel"),
    )
    print(f"OK: {', '.join(counts)}, checksum {config.checksum}", file=out)
    return 0


def hash_api_key(key: str) -> str:
    """The form an API key takes in the config file: ``sha256:`` and the hex digest.

    A plain SHA-256 is enough (no salt, no slow hash): keys are long random tokens, not
    passwords a person chose, so there is nothing to brute-force from the digest.
    """
    if not key:
        raise ValueError("an API key cannot be empty")
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (256 bits, URL-safe) to hand to a partner."""
    return secrets.token_urlsafe(32)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
