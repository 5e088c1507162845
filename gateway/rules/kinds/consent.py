"""Rule kinds about the consent the lead carries: ``consent_given``, ``consent_fresh``,
``consent_recorded``, ``consent_certificate``.
"""

from __future__ import annotations

from gateway.config.reader import MISSING, Reader, join, show
from gateway.rules.kinds.parameters import Fields, read_pattern
from gateway.rules.model import Env, Predicate


def consent_given(r: Reader, fields: Fields, path: str) -> Predicate:
    return lambda env: env.lead.consent is not None and env.lead.consent.given


def consent_fresh(r: Reader, fields: Fields, path: str) -> Predicate:
    max_age_s = r.duration(fields.get("max_age", MISSING), join(path, "max_age"))

    def test(env: Env) -> bool:
        consent = env.lead.consent
        return (
            consent is not None and consent.at is not None and env.now_s - consent.at <= max_age_s
        )

    return test


def consent_recorded(r: Reader, fields: Fields, path: str) -> Predicate:
    at = join(path, "fields")
    names: tuple[str, ...] = ("text", "version")
    if fields.get("fields") is not None:
        items = r.items(fields["fields"], at, "a list among text, version")
        if not items:
            r.fail(at, "needs at least one of text, version")
        bad = [i for i, name in enumerate(items) if name not in ("text", "version")]
        for i in bad:
            r.fail(f"{at}[{i}]", f"{show(items[i])} is not one of text, version")
        names = tuple(str(name) for name in items if name in ("text", "version"))
    text, version = "text" in names, "version" in names

    def test(env: Env) -> bool:
        consent = env.lead.consent
        return (
            consent is not None
            and (not text or consent.text is not None)
            and (not version or consent.version is not None)
        )

    return test


def consent_certificate(r: Reader, fields: Fields, path: str) -> Predicate:
    pattern = None
    if fields.get("pattern") is not None:
        pattern = read_pattern(r, fields["pattern"], join(path, "pattern"))

    def test(env: Env) -> bool:
        consent = env.lead.consent
        certificate = None if consent is None else consent.certificate_id
        if certificate is None:
            return False
        return pattern is None or pattern.fullmatch(certificate) is not None

    return test
