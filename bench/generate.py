"""Request bodies for a scenario: new people, the same people again, invalid leads.

Deterministic for a seed. Every new person has a distinct email and a distinct valid French
mobile, a realistic name and a mailbox at a common French or international provider, so the
campaign's default rule pack passes them (no disposable, role or typo address, no placeholder
name). The duplicates are the kinds a gateway meets:

- ``same``: the same person posted again, spelled the same way;
- ``respelled``: the same person spelled another way: case, Gmail dots and ``+tags``,
  Outlook ``+tags``, the phone national (``06 12 34 56 78``) or with ``+33``/``0033``;
- ``other_channel``: the same person again through another channel.

Invalid leads are refused by validation (422 for a single lead, an ``error`` in a batch): a
broken email, a missing first name, a number that is not a phone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.scenario import PARTNERS, Scenario

FIRST_NAMES = (
    "Jean",
    "Marie",
    "Pierre",
    "Camille",
    "Nicolas",
    "Julie",
    "Thomas",
    "Léa",
    "Antoine",
    "Chloé",
    "Hugo",
    "Manon",
    "Lucas",
    "Sarah",
    "Louis",
    "Inès",
    "Mathieu",
    "Emma",
    "Élodie",
    "Karim",
    "Sophie",
    "Yanis",
    "Claire",
    "Paul",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
)
#: (domain, weight): roughly the French consumer mix, Gmail first.
DOMAINS = (
    ("gmail.com", 40),
    ("orange.fr", 14),
    ("hotmail.fr", 10),
    ("outlook.fr", 6),
    ("free.fr", 8),
    ("yahoo.fr", 7),
    ("sfr.fr", 5),
    ("laposte.net", 5),
    ("icloud.com", 5),
)
POSTAL_CODES = ("75011", "69003", "13008", "31000", "44000", "33000", "59000", "67000")
#: French mobiles are 6 + [0-24-8] + 7 digits (libphonenumber's valid ranges).
_MOBILE_SECOND = "01245678"
_GMAIL_LIKE = {"gmail.com"}
_PLUS_TAGS = {"gmail.com", "hotmail.fr", "outlook.fr", "icloud.com"}


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    first_name: str
    last_name: str
    email: str  # as first posted
    phone: str  # E.164
    postal_code: str
    partner: str
    channel: str


@dataclass(frozen=True, slots=True)
class GeneratedLead:
    """One lead: its kind (``new``, a duplicate kind, ``invalid``), who posts it, the body."""

    kind: str
    partner: str
    lead: dict[str, object]
    original: Person | None  # the person a duplicate repeats


@dataclass(frozen=True, slots=True)
class Request:
    api_key: str
    body: bytes
    batch: int
    #: What the gateway should answer, if the requests are sent once each in order.
    expected: tuple[int, int, int] = (0, 0, 0)  # accepted, duplicate, invalid


def person_phone(index: int) -> str:
    second = _MOBILE_SECOND[(index // 10_000_000) % len(_MOBILE_SECOND)]
    # A bijection of 0..10^7-1 (the multiplier is prime to 10): distinct, not sequential.
    return f"+336{second}{index * 7_368_787 % 10_000_000:07d}"


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = [k for k, w in weights.items() if w > 0]
    return rng.choices(keys, [weights[k] for k in keys])[0]


def respell_email(rng: random.Random, email: str) -> str:
    """Another spelling of ``email`` that the gateway's normalization maps to the same person."""
    local, _, domain = email.partition("@")
    if domain in _GMAIL_LIKE:
        bare = local.replace(".", "")
        cut = rng.randrange(1, len(bare))
        local = bare[:cut] + "." + bare[cut:] if rng.random() < 0.5 else bare
    if domain in _PLUS_TAGS and rng.random() < 0.6:
        local += "+" + rng.choice(("promo", "news", "jeu", "leads"))
    local = local[:1].upper() + local[1:]
    if rng.random() < 0.5:
        domain = domain.upper()
    spelled = f"{local}@{domain}"
    return spelled if spelled != email else email.upper()


def respell_phone(rng: random.Random, e164: str) -> str:
    national = "0" + e164[3:]
    pairs = " ".join(national[i : i + 2] for i in range(0, 10, 2))
    return rng.choice((pairs, national, "+33 " + pairs[1:], "0033" + e164[3:], e164))


class LeadGenerator:
    """Leads in the order a run sends them; ``kinds`` counts what was generated."""

    def __init__(self, scenario: Scenario, *, first_index: int = 0) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.people: list[Person] = []
        self.next_index = first_index
        self.kinds: Counter[str] = Counter()
        self._domains = [d for d, _ in DOMAINS]
        self._domain_weights = [w for _, w in DOMAINS]

    def _channel(self, partner: str, exclude: str | None = None) -> str:
        own = [c for c in PARTNERS[partner][1] if c != exclude]
        weights = {c: self.scenario.channels.get(c, 0.0) for c in own}
        if not any(weights.values()):
            return self.rng.choice(own)
        return _weighted(self.rng, weights)

    def _new_person(self, partner: str) -> Person:
        rng = self.rng
        index = self.next_index
        self.next_index += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        ascii_name = f"{first}.{last}".lower().translate(str.maketrans("éèêëà", "eeeea"))
        domain = rng.choices(self._domains, self._domain_weights)[0]
        person = Person(
            index=index,
            first_name=first,
            last_name=last,
            email=f"{ascii_name}{index}@{domain}",
            phone=person_phone(index),
            postal_code=rng.choice(POSTAL_CODES),
            partner=partner,
            channel=self._channel(partner),
        )
        self.people.append(person)
        return person

    def _body(self, person: Person, channel: str, email: str, phone: str) -> dict[str, object]:
        return {
            "campaign": self.scenario.campaign,
            "channel": channel,
            "email": email,
            "phone": phone,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "postal_code": person.postal_code,
            "ref": f"r{person.index}",
        }

    def lead(self, partner: str) -> GeneratedLead:
        """The next lead, posted by ``partner``."""
        rng = self.rng
        draw = rng.random()
        kind = "new"
        if draw < self.scenario.invalid:
            kind = "invalid"
        else:
            draw -= self.scenario.invalid
            for name, share in self.scenario.duplicates.items():
                if draw < share:
                    kind = name
                    break
                draw -= share
        if kind != "new" and kind != "invalid" and not self.people:
            kind = "new"  # nobody to repeat yet
        self.kinds[kind] += 1
        if kind == "new":
            person = self._new_person(partner)
            body = self._body(person, person.channel, person.email, person.phone)
            return GeneratedLead(kind, partner, body, None)
        if kind == "invalid":
            person = self._new_person(partner)
            self.people.pop()  # never accepted: nobody may repeat it
            body = self._body(person, person.channel, person.email, person.phone)
            broken = rng.randrange(3)
            if broken == 0:
                body["email"] = person.email.replace("@", "@@")
            elif broken == 1:
                del body["first_name"]
            else:
                body["phone"] = "+33 1"
            return GeneratedLead(kind, partner, body, None)
        original = rng.choice(self.people)
        own = PARTNERS[partner][1]
        if kind == "same":
            channel = original.channel if original.channel in own else self._channel(partner)
            body = self._body(original, channel, original.email, original.phone)
        elif kind == "respelled":
            channel = original.channel if original.channel in own else self._channel(partner)
            email, phone = original.email, original.phone
            which = rng.randrange(3)
            if which != 1:
                email = respell_email(rng, email)
            if which != 0:
                phone = respell_phone(rng, phone)
            if (email, phone) == (original.email, original.phone):
                email = respell_email(rng, email)
            body = self._body(original, channel, email, phone)
        else:
            channel = self._channel(partner, exclude=original.channel)
            body = self._body(original, channel, original.email, original.phone)
        return GeneratedLead(kind, partner, body, original)

    def leads(self, count: int) -> Iterator[GeneratedLead]:
        for _ in range(count):
            yield self.lead(_weighted(self.rng, self.scenario.partners))

    def requests(self, count: int) -> list[Request]:
        """``count`` request bodies of ``scenario.batch`` leads each, one partner per request."""
        batch = self.scenario.batch
        out: list[Request] = []
        for _ in range(count):
            partner = _weighted(self.rng, self.scenario.partners)
            key = PARTNERS[partner][0]
            made = [self.lead(partner) for _ in range(batch)]
            kinds = Counter(lead.kind for lead in made)
            expected = (kinds["new"], batch - kinds["new"] - kinds["invalid"], kinds["invalid"])
            if batch == 1:
                out.append(Request(key, orjson.dumps(made[0].lead), 1, expected))
            else:
                body = orjson.dumps({"leads": [lead.lead for lead in made]})
                out.append(Request(key, body, batch, expected))
        return out


def expected_mix(requests: Iterable[Request]) -> dict[str, int]:
    """What the gateway should answer for ``requests`` sent once each, in this order."""
    accepted = duplicate = invalid = 0
    for request in requests:
        accepted += request.expected[0]
        duplicate += request.expected[1]
        invalid += request.expected[2]
    return {"accepted": accepted, "duplicate": duplicate, "invalid": invalid}


def write_bodies(requests: list[Request], path: Path) -> None:
    """One request a line, ``<api key>\\t<JSON body>``, for ``bench/bodies.lua``."""
    with path.open("wb") as out:
        for request in requests:
            out.write(request.api_key.encode() + b"\t" + request.body + b"\n")
