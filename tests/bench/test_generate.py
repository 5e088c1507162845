"""Generated traffic: the shares a scenario asks for, leads the bench campaign accepts, and
duplicates the gateway's own normalization really maps to the same person."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.generate import (
    LeadGenerator,
    Request,
    expected_mix,
    person_phone,
    respell_email,
    respell_phone,
    write_bodies,
)
from bench.scenario import GATEWAY_CONFIG, PARTNERS, Scenario, parse_scenario
from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.errors import InvalidLead
from gateway.leads.lead import Lead
from gateway.leads.parse import parse_lead
from gateway.types import CampaignId

NOW_S = 1_795_000_000.0
N = 10_000


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(GATEWAY_CONFIG)


def _scenario(**overrides: object) -> Scenario:
    data: dict[str, object] = {
        "partners": {"p-alpha": 5, "p-beta": 3, "p-gamma": 2},
        "channels": {"email": 5, "coreg": 3, "comparator": 2},
        "duplicates": {"same": 0.08, "respelled": 0.06, "other_channel": 0.04},
        "invalid": 0.05,
        "seed": 42,
    }
    data.update(overrides)
    return parse_scenario(data, "t")


def _parse(config: Config, body: dict[str, object]) -> Lead:
    return parse_lead(body, config.campaigns, now_s=NOW_S)


def test_shares_are_within_tolerance_on_a_fixed_seed() -> None:
    generator = LeadGenerator(_scenario())
    kinds = Counter(lead.kind for lead in generator.leads(N))
    assert kinds == generator.kinds
    for kind, share in (("same", 0.08), ("respelled", 0.06), ("other_channel", 0.04),
                        ("invalid", 0.05)):  # fmt: skip
        assert abs(kinds[kind] / N - share) < 0.01, (kind, kinds[kind])
    assert abs(kinds["new"] / N - 0.77) < 0.015


def test_partner_and_channel_mix_follow_the_weights() -> None:
    generator = LeadGenerator(_scenario())
    leads = list(generator.leads(N))
    partners = Counter(lead.partner for lead in leads)
    assert abs(partners["p-alpha"] / N - 0.5) < 0.02
    assert abs(partners["p-gamma"] / N - 0.2) < 0.02
    for lead in leads:
        assert lead.lead["channel"] in PARTNERS[lead.partner][1]


def test_the_same_seed_gives_the_same_bodies() -> None:
    first = LeadGenerator(_scenario()).requests(50)
    again = LeadGenerator(_scenario()).requests(50)
    other = LeadGenerator(_scenario(seed=43)).requests(50)
    assert [r.body for r in first] == [r.body for r in again]
    assert [r.body for r in first] != [r.body for r in other]


def test_valid_leads_pass_validation_and_the_default_rule_pack(config: Config) -> None:
    campaign = config.campaigns[CampaignId("bench")]
    assert campaign.rules is not None  # the bench campaign runs the default pack
    for generated in LeadGenerator(_scenario()).leads(2000):
        if generated.kind == "invalid":
            with pytest.raises(InvalidLead):
                _parse(config, generated.lead)
            continue
        lead = _parse(config, generated.lead)
        verdict = campaign.rules.evaluate(
            lead, NOW_S, channel=str(generated.lead["channel"]), partner=generated.partner
        )
        assert not verdict.failed, (generated.lead, verdict.failed)


def test_new_people_are_distinct_people(config: Config) -> None:
    generator = LeadGenerator(_scenario(duplicates={}, invalid=0))
    identities: set[str] = set()
    for generated in generator.leads(3000):
        lead = _parse(config, generated.lead)
        values = {f"{kind}:{value}" for kind, value in lead.identities.items()}
        assert len(values) == 2
        assert not values & identities
        identities |= values


def test_duplicates_normalize_to_the_person_they_repeat(config: Config) -> None:
    spellings_differ = 0
    seen = Counter[str]()
    for generated in LeadGenerator(_scenario()).leads(N):
        original = generated.original
        if original is None:
            continue
        seen[generated.kind] += 1
        lead = _parse(config, generated.lead)
        first = _parse(config, {"campaign": "bench", "email": original.email,
                                "phone": original.phone, "first_name": "X"})  # fmt: skip
        assert dict(lead.identities) == dict(first.identities), generated.lead
        spelled = (generated.lead["email"], generated.lead["phone"])
        if generated.kind == "respelled":
            assert spelled != (original.email, original.phone)
            spellings_differ += 1
        else:
            assert spelled == (original.email, original.phone)
        if generated.kind == "other_channel":
            assert generated.lead["channel"] != original.channel
    assert set(seen) == {"same", "respelled", "other_channel"}
    assert min(seen.values()) > 100
    assert spellings_differ == seen["respelled"]


@pytest.mark.parametrize(
    "email",
    ["jean.dupont12@gmail.com", "marie.roux3@hotmail.fr", "paul.morel9@orange.fr",
     "lea.petit1@icloud.com", "hugo.simon5@yahoo.fr"],
)  # fmt: skip
def test_every_respelling_of_an_email_is_the_same_identity(config: Config, email: str) -> None:
    rng = random.Random(1)
    phone = person_phone(12)
    want = _parse(config, {"campaign": "bench", "email": email, "phone": phone,
                           "first_name": "X"}).identities  # fmt: skip
    spellings = set()
    for _ in range(50):
        other_email, other_phone = respell_email(rng, email), respell_phone(rng, phone)
        spellings.add(other_email)
        assert other_email != email
        lead = _parse(config, {"campaign": "bench", "email": other_email, "phone": other_phone,
                               "first_name": "X"})  # fmt: skip
        assert lead.identities == want
    assert len(spellings) > 1


def test_batches_and_their_expected_answers() -> None:
    generator = LeadGenerator(_scenario(batch=20))
    requests = generator.requests(30)
    for request in requests:
        body = orjson.loads(request.body)
        assert len(body["leads"]) == 20 == request.batch
        assert sum(request.expected) == 20
        partners = {p for p, (key, _) in PARTNERS.items() if key == request.api_key}
        assert len(partners) == 1
        channels = {lead["channel"] for lead in body["leads"]}
        assert channels <= set(PARTNERS[partners.pop()][1])
    mix = expected_mix(requests)
    assert sum(mix.values()) == 600
    assert mix["invalid"] == generator.kinds["invalid"]
    assert mix["accepted"] == generator.kinds["new"]


def test_the_bodies_file_is_one_request_a_line(tmp_path: Path) -> None:
    requests = [Request("bench-key-alpha", b'{"a":1}', 1), Request("bench-key-beta", b"{}", 1)]
    write_bodies(requests, tmp_path / "b")
    lines = (tmp_path / "b").read_bytes().splitlines()
    assert lines == [b'bench-key-alpha\t{"a":1}', b"bench-key-beta\t{}"]


def test_phones_are_distinct_valid_french_mobiles(config: Config) -> None:
    phones = {person_phone(i) for i in range(0, 30_000_000, 7919)}
    assert len(phones) == len(range(0, 30_000_000, 7919))
    for phone in list(phones)[:300]:
        assert _parse(config, {"campaign": "bench", "email": "a.b@orange.fr", "phone": phone,
                               "first_name": "X"}).phone == phone  # fmt: skip
