"""``RuleSet.evaluate_probe``: at a ping, the rules whose answer needs none of the person's
fields are decided; the others wait for the post, where every rule runs again."""

from __future__ import annotations

import hashlib

from gateway.leads.lead import Lead
from gateway.leads.parse import parse_probe

from .conftest import CAMPAIGN, NOW, make_lead, rule_set

PERSONAL = frozenset({"email", "phone", "first_name", "last_name", "birth_date", "company", "ip"})


def ping(**fields: object) -> Lead:
    data = {"campaign": "c", "email_sha256": hashlib.sha256(b"a@example.com").hexdigest()}
    return parse_probe({**data, **fields}, {CAMPAIGN.id: CAMPAIGN}, ping=True, now_s=NOW)


POSTAL = {"id": "paris", "message": "m", "require": {"kind": "regex", "field": "postal_code",
          "pattern": "75.*"}}  # fmt: skip
NOT_FREE_MAIL = {"id": "pro", "message": "m", "reject_if": {"kind": "email_free_mail"}}


def test_rules_on_pinged_fields_are_decided_the_others_wait() -> None:
    rules = rule_set([POSTAL, NOT_FREE_MAIL])
    outside = rules.evaluate_probe(ping(postal_code="69001"), NOW, PERSONAL)
    assert outside.reasons == ("rule.paris",)  # email_free_mail read the email: not decided
    inside = rules.evaluate_probe(ping(postal_code="75011"), NOW, PERSONAL)
    assert not inside.rejected
    # The same rules on the full lead decide both.
    full = rules.evaluate(make_lead(email="x@gmail.com", postal_code="75011"), NOW)
    assert full.reasons == ("rule.pro",)


def test_a_rule_is_decided_by_what_it_read_to_answer() -> None:
    # any: true as soon as the postal code matches, without reading the email.
    either = {"id": "either", "message": "m", "require": {"any": [
        {"kind": "regex", "field": "postal_code", "pattern": "75.*"},
        {"kind": "email_free_mail"},
    ]}}  # fmt: skip
    rules = rule_set([either])
    assert not rules.evaluate_probe(ping(postal_code="75011"), NOW, PERSONAL).rejected
    # Elsewhere it had to read the email: left to the post, not failed.
    assert not rules.evaluate_probe(ping(postal_code="69001"), NOW, PERSONAL).rejected


def test_the_minimum_score_rejects_a_ping_only_beyond_reach() -> None:
    scoring = [
        {"id": "paris", "message": "m", "score": 10,
         "when": {"kind": "regex", "field": "postal_code", "pattern": "75.*"}},
        {"id": "mobile", "message": "m", "score": 20,
         "when": {"kind": "phone_type", "types": ["mobile"]}},
    ]  # fmt: skip
    rules = rule_set(scoring, min_score=25)
    # 10 decided + up to 20 undecided can reach 25: not rejected yet.
    reachable = rules.evaluate_probe(ping(postal_code="75011"), NOW, PERSONAL)
    assert (reachable.rejected, reachable.score) == (False, 10)
    # 0 + 20 cannot.
    beyond = rules.evaluate_probe(ping(postal_code="69001"), NOW, PERSONAL)
    assert beyond.rejected
    assert beyond.reasons[0] == "score.below_minimum"
