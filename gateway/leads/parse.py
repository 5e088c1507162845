"""``parse_lead``: from what a publisher posted to a validated ``Lead``.

Input is a JSON object (values may be strings, numbers, booleans, null, objects, arrays) or a
form/query string (every value a string; booleans spelled ``1/0/true/false/yes/no/on/off``).
``parse_lead`` either returns a ``Lead`` whose every field is normalized or raises
``InvalidLead`` listing every problem found, so a publisher fixes a lead in one round trip.

Problem messages say why a value is wrong, never what it was: they are sent back to the
publisher and may be logged, and emails, phones, names and IPs are personal data.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol, TypeVar, cast

from gateway.errors import FieldProblem, InvalidLead, MissingCountryCode
from gateway.leads.email import MAX_EMAIL_CHARS, normalize_email
from gateway.leads.lead import (
    CHECK_UNKNOWN,
    IDENTITY_FIELDS,
    LEAD_FIELDS,
    PERSONAL_FIELDS,
    Consent,
    Lead,
)
from gateway.leads.phone import MAX_PHONE_CHARS, normalize_phone
from gateway.leads.text import (
    MAX_NAME_CHARS,
    MAX_POSTAL_CODE_CHARS,
    clean_line,
    has_control_chars,
    inline_control_char,
    normalize_birth_date,
    normalize_country,
    normalize_name,
    normalize_postal_code,
)
from gateway.types import CampaignId, ChannelId

T = TypeVar("T")


class FieldRules(Protocol):
    """What the parser needs of a lead's campaign (``config.model.Campaign`` is one): the
    fields it must have, the ones it is deduplicated on, where its national numbers are."""

    @property
    def identity_fields(self) -> tuple[str, ...]: ...

    @property
    def required_fields(self) -> tuple[str, ...]: ...

    @property
    def phone_region(self) -> str: ...


MAX_ID_CHARS = 64  # campaign, channel
MAX_REF_CHARS = 128
MAX_PLACE_CHARS = 200  # city, company
MAX_IP_CHARS = 64  # an IPv6 address with an IPv4 tail and a zone id
MAX_CONSENT_TEXT_CHARS = 2000
MAX_CONSENT_VERSION_CHARS = 64
MAX_CERTIFICATE_CHARS = 200  # TrustedForm certificate URLs, Jornaya LeadiD tokens
MAX_EXTRA_FIELDS = 50
MAX_EXTRA_VALUE_CHARS = 512
#: Consent instants before this are unit mistakes (epoch microseconds, days), not consents.
EARLIEST_CONSENT_AT = 946_684_800.0  # 2000-01-01T00:00:00Z
#: How far a publisher's clock may run ahead of ours.
CONSENT_CLOCK_SKEW_S = 86_400.0
#: Epoch values at least this large are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_EPOCH_MS_FROM = 1e11

_EXTRA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_BOOLEAN_HINT = "expected a boolean (true/false, 1/0, yes/no, on/off)"

_CONSENT_KEYS = ("given", "at", "text", "version", "certificate_id")
_FLAT_CONSENT_DETAILS = ("consent_at", "consent_text", "consent_version", "consent_certificate_id")
#: A probe's hashed identifiers: ``<kind>_sha256``, the SHA-256 (hex) of the identity.
HASHED_FIELDS = {f"{kind}_sha256": kind for kind in IDENTITY_FIELDS}
HASHED_FIELDS_BY_KIND = {kind: name for name, kind in HASHED_FIELDS.items()}
#: The fields a ping may carry besides its hashed identifiers: none names or reaches a person.
PING_FIELDS = frozenset(
    {"campaign", "channel", "ref", "test", "postal_code", "city", "country", "consent",
     *_FLAT_CONSENT_DETAILS}
)  # fmt: skip
#: What a pre-ping check may carry besides its hashed identifiers.
CHECK_FIELDS = frozenset({"campaign", "channel", "test"})
KNOWN_FIELDS = frozenset(
    {
        "campaign",
        "channel",
        "ref",
        "test",
        # A post that follows a ping names it; never an extra field forwarded to the CRM.
        "ping_id",
        *LEAD_FIELDS,
        *_FLAT_CONSENT_DETAILS,
    }
)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def parse_lead(
    data: Mapping[str, object],
    campaigns: Mapping[CampaignId, FieldRules],
    *,
    field_prefix: str = "",
    now_s: float | None = None,
) -> Lead:
    """Validate and normalize one posted lead.

    ``campaigns``: the known campaigns; an unknown id is ``unknown campaign`` (the known ones
    are never listed: publishers must not learn other advertisers' campaigns).
    ``field_prefix`` is put before every problem's field (``leads/3/`` gives ``leads/3/email``).
    ``now_s`` (epoch seconds, default: the clock) bounds birth dates and consent instants.
    Raises ``InvalidLead`` with one ``FieldProblem`` per bad field, all of them at once.
    """
    return _LeadParser(data, field_prefix, time.time() if now_s is None else now_s).parse(campaigns)


def parse_probe(
    data: Mapping[str, object],
    campaigns: Mapping[CampaignId, FieldRules],
    *,
    ping: bool,
    now_s: float | None = None,
) -> Lead:
    """Validate a probe: a pre-ping check (``ping=False``: the campaign, the channel and the
    hashed identifiers) or a ping (also the reference, the place and the consent proof, and
    extra fields). The answer is a ``Lead`` with ``hashed`` set, no personal field, and the
    campaign's identity fields present as lower-case SHA-256 hex in ``identities``.

    A personal field (an email, a name, an IP…) is refused by name, never quoted: a probe is
    how a publisher asks without handing the person over. At least one of the campaign's
    identity fields must come hashed (``email_sha256``, ``phone_sha256``). Raises
    ``InvalidLead`` with every problem at once."""
    parser = _LeadParser(data, "", time.time() if now_s is None else now_s)
    return parser.parse_probe(campaigns, ping)


class _LeadParser:
    """One parse: the input, where problems go, and the helpers that fill them."""

    __slots__ = ("data", "now_s", "prefix", "problem_fields", "problems")

    def __init__(
        self,
        data: Mapping[str, object],
        prefix: str,
        now_s: float,
        problems: list[FieldProblem] | None = None,
        problem_fields: set[str] | None = None,
    ) -> None:
        self.data = data
        self.prefix = prefix
        self.now_s = now_s
        self.problems = [] if problems is None else problems
        self.problem_fields = set() if problem_fields is None else problem_fields

    def problem(self, name: str, message: str) -> None:
        self.problems.append(FieldProblem(field=self.prefix + name, message=message))
        self.problem_fields.add(name)

    def present(self, name: str) -> bool:
        return _present(self.data.get(name))

    def field(
        self,
        name: str,
        normalize: Callable[[str], T],
        *,
        max_chars: int,
        numbers: bool = False,
    ) -> T | None:
        """The field ``name`` through ``normalize``, or ``None`` if absent or bad (noted).

        ``max_chars`` here only keeps huge values away from the normalizers; the normalizer
        enforces the exact limit after it has trimmed and collapsed.
        """
        value = self.data.get(name)
        if value is None:  # most optional fields: _scalar_text's answer, without the call
            return None
        try:
            # Most values are strings: _scalar_text's answer for one, without the call.
            text = (
                value.strip() or None
                if type(value) is str
                else _scalar_text(value, numbers=numbers)
            )
            if text is None:
                return None
            if len(text) > 2 * max_chars + 16:
                raise ValueError(f"too long (at most {max_chars} characters)")
            return normalize(text)
        except ValueError as exc:
            self.problem(name, str(exc))
            return None

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        try:
            return _boolean(value)
        except ValueError as exc:
            self.problem(name, str(exc))
            return None

    def instant(self, name: str) -> float | None:
        try:
            return _epoch_s(self.data.get(name), self.now_s)
        except ValueError as exc:
            self.problem(name, str(exc))
            return None

    def campaign(
        self, campaigns: Mapping[CampaignId, FieldRules]
    ) -> tuple[str | None, FieldRules | None]:
        """The ``campaign`` field, and the campaign it names when it is known."""
        campaign_id = self.field("campaign", _check_id, max_chars=MAX_ID_CHARS)
        campaign = None
        if campaign_id is not None:
            campaign = campaigns.get(CampaignId(campaign_id))
            if campaign is None:
                self.problem("campaign", "unknown campaign")
        elif "campaign" not in self.problem_fields:
            self.problem("campaign", "required")
        return campaign_id, campaign

    def parse(self, campaigns: Mapping[CampaignId, FieldRules]) -> Lead:
        campaign_id, campaign = self.campaign(campaigns)
        data = self.data
        channel = self.field("channel", _check_id, max_chars=MAX_ID_CHARS)
        ref = self.field("ref", _check_ref, max_chars=MAX_REF_CHARS, numbers=True)
        # The fields most leads do not carry are looked for before their parser is called
        # (an absent field is None either way; a call per lead each saved).
        test = self.boolean("test") if "test" in data else None
        email = self.field("email", normalize_email, max_chars=MAX_EMAIL_CHARS)
        phone = self._phone(campaign)
        first_name = self.field("first_name", normalize_name, max_chars=MAX_NAME_CHARS)
        last_name = self.field("last_name", normalize_name, max_chars=MAX_NAME_CHARS)
        country = (
            self.field("country", normalize_country, max_chars=8) if "country" in data else None
        )
        postal_code = self._postal_code(country, campaign)
        city = (
            self.field("city", _clean_place, max_chars=MAX_PLACE_CHARS) if "city" in data else None
        )
        birth_date = (
            self.field("birth_date", self._birth_date, max_chars=16)
            if "birth_date" in data
            else None
        )
        company = (
            self.field("company", _clean_place, max_chars=MAX_PLACE_CHARS)
            if "company" in data
            else None
        )
        ip = self.field("ip", _ip, max_chars=MAX_IP_CHARS) if "ip" in data else None
        consent = self._consent()
        extra = self._extra()

        identities: dict[str, str] = {}
        if campaign is not None:
            self._check_presence(campaign)
            for kind in campaign.identity_fields:
                if kind == "email" and email is not None:
                    identities["email"] = email.identity
                elif kind == "phone" and phone is not None:
                    identities["phone"] = phone

        if self.problems or campaign_id is None:
            raise InvalidLead(self.problems)
        return Lead(
            campaign=CampaignId(campaign_id),
            channel=None if channel is None else ChannelId(channel),
            ref=ref,
            test=bool(test),
            email=None if email is None else email.address,
            phone=phone,
            first_name=first_name,
            last_name=last_name,
            postal_code=postal_code,
            city=city,
            country=country,
            birth_date=birth_date,
            company=company,
            ip=ip,
            consent=consent,
            extra=extra,
            identities=identities,
        )

    def parse_probe(self, campaigns: Mapping[CampaignId, FieldRules], ping: bool) -> Lead:
        allowed = PING_FIELDS if ping else CHECK_FIELDS
        what = "ping" if ping else "check"
        for key in self.data:
            if key in HASHED_FIELDS or key in allowed:
                continue
            if key in PING_FIELDS:  # and this is a check
                self.problem(key, "not a field of a check")
            elif key in LEAD_FIELDS:
                self.problem(
                    key,
                    f"personal data is not sent with a {what}: hash the identifiers "
                    "(email_sha256, phone_sha256) and post the rest with the lead",
                )
            elif key == "ping_id":
                self.problem(key, f"a {what} has no ping_id: send it with the post")
            elif not ping:
                self.problem(_field_name(key), "not a field of a check")
        campaign_id, campaign = self.campaign(campaigns)
        channel = self.field("channel", _check_id, max_chars=MAX_ID_CHARS)
        test = self.boolean("test")
        ref = country = postal_code = city = consent = None
        extra: dict[str, str] = {}
        if ping:
            ref = self.field("ref", _check_ref, max_chars=MAX_REF_CHARS, numbers=True)
            country = self.field("country", normalize_country, max_chars=8)
            postal_code = self._postal_code(country, campaign)
            city = self.field("city", _clean_place, max_chars=MAX_PLACE_CHARS)
            consent = self._consent()
            extra = {k: v for k, v in self._extra().items() if k not in HASHED_FIELDS}
        hashed: dict[str, str] = {}
        for name, kind in HASHED_FIELDS.items():
            digest = self.field(name, _sha256_hex, max_chars=64)
            if digest is not None:
                hashed[kind] = digest
        identities: dict[str, str] = {}
        if campaign is not None:
            kinds = campaign.identity_fields
            identities = {kind: hashed[kind] for kind in kinds if kind in hashed}
            problems = {HASHED_FIELDS_BY_KIND[kind] for kind in kinds} & self.problem_fields
            if kinds and not identities and not problems:
                names = " or ".join(HASHED_FIELDS_BY_KIND[kind] for kind in kinds)
                self.problem(
                    HASHED_FIELDS_BY_KIND[kinds[0]],
                    f"required: {names} (the campaign deduplicates on {', '.join(kinds)})",
                )
        if self.problems or campaign_id is None:
            raise InvalidLead(self.problems)
        return Lead(
            campaign=CampaignId(campaign_id),
            channel=None if channel is None else ChannelId(channel),
            ref=ref,
            test=bool(test),
            email=None,
            phone=None,
            first_name=None,
            last_name=None,
            postal_code=postal_code,
            city=city,
            country=country,
            birth_date=None,
            company=None,
            ip=None,
            consent=consent,
            extra=extra,
            identities=identities,
            unknown=PERSONAL_FIELDS if ping else CHECK_UNKNOWN,
        )

    def _birth_date(self, text: str) -> str:
        # Most leads carry no birth date: today's date is worked out only for those that do.
        return normalize_birth_date(text, today=datetime.fromtimestamp(self.now_s, UTC).date())

    def _phone(self, campaign: FieldRules | None) -> str | None:
        region = None if campaign is None else campaign.phone_region

        def normalize(text: str) -> str | None:
            try:
                return normalize_phone(text, region)
            except MissingCountryCode:
                if campaign is None:  # the campaign's own problem says what to fix first
                    return None
                raise

        return self.field("phone", normalize, max_chars=MAX_PHONE_CHARS, numbers=True)

    def _postal_code(self, country: str | None, campaign: FieldRules | None) -> str | None:
        # A lead that names no country is in its campaign's (the phone region); one whose
        # country is invalid gets no country-specific check rather than a wrong one.
        if country is None and "country" not in self.problem_fields and campaign is not None:
            country = campaign.phone_region
        value = self.data.get("postal_code")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return normalize_postal_code(value, country)
            text = _scalar_text(value)
            if text is None:
                return None
            if len(text) > 2 * MAX_POSTAL_CODE_CHARS:
                raise ValueError(f"too long (at most {MAX_POSTAL_CODE_CHARS} characters)")
            return normalize_postal_code(text, country)
        except ValueError as exc:
            self.problem("postal_code", str(exc))
            return None

    def _consent(self) -> Consent | None:
        raw = self.data.get("consent")
        if raw is None and self.data.keys().isdisjoint(_FLAT_CONSENT_DETAILS):
            return None  # nothing of a consent sent: _consent_parts' answer, without its steps
        if not isinstance(raw, Mapping):
            return self._consent_parts("consent", *_FLAT_CONSENT_DETAILS)
        for name in _FLAT_CONSENT_DETAILS:
            if self.present(name):
                self.problem(name, "not allowed with a consent object: send details inside it")
        nested = _LeadParser(
            cast(Mapping[str, object], raw),
            f"{self.prefix}consent/",
            self.now_s,
            self.problems,
            set(),
        )
        for key in nested.data:
            if key not in _CONSENT_KEYS:
                nested.problem(_field_name(key), "unknown field")
        consent = nested._consent_parts(*_CONSENT_KEYS)
        if nested.problem_fields:
            self.problem_fields.add("consent")
        return consent

    def _consent_parts(
        self, given_name: str, at_name: str, text_name: str, version_name: str, cert_name: str
    ) -> Consent | None:
        given = self.boolean(given_name)
        at = self.instant(at_name)
        text = self.field(text_name, _consent_text, max_chars=MAX_CONSENT_TEXT_CHARS, numbers=False)
        version = self.field(
            version_name,
            _check_consent_version,
            max_chars=MAX_CONSENT_VERSION_CHARS,
            numbers=True,
        )
        certificate_id = self.field(cert_name, _check_certificate, max_chars=MAX_CERTIFICATE_CHARS)
        if given is None:
            details = (at_name, text_name, version_name, cert_name)
            if (
                given_name not in self.problem_fields
                # Mostly none of them is sent: one set test, in C, then each only if one is.
                and not self.data.keys().isdisjoint(details)
                and any(map(self.present, details))
            ):
                self.problem(given_name, "required when consent details are sent")
            return None
        return Consent(
            given=given, at=at, text=text, version=version, certificate_id=certificate_id
        )

    def _extra(self) -> dict[str, str]:
        if self.data.keys() <= KNOWN_FIELDS:  # no extra field: one set comparison, in C
            return {}
        extra: dict[str, str] = {}
        unknown = 0
        for key, value in self.data.items():
            if key in KNOWN_FIELDS:
                continue
            unknown += 1
            if unknown > MAX_EXTRA_FIELDS:
                self.problem(
                    _field_name(key), f"too many extra fields (at most {MAX_EXTRA_FIELDS})"
                )
                break
            if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key):
                self.problem(
                    _field_name(key),
                    "not a field leadgate knows, and not a valid extra field name "
                    "(1-64 letters, digits, '_', '.', '-')",
                )
                continue
            try:
                text = _extra_text(value)
            except ValueError as exc:
                self.problem(key, str(exc))
                continue
            if text is not None:
                extra[key] = text
        return extra

    def _check_presence(self, campaign: FieldRules) -> None:
        for name in campaign.required_fields:
            present = self._consent_present() if name == "consent" else self.present(name)
            if not present and name not in self.problem_fields:
                self.problem(name, "required")
        kinds = campaign.identity_fields
        if (
            kinds
            and not any(map(self.present, kinds))
            and not any(kind in self.problem_fields for kind in kinds)
        ):
            alternatives = ", ".join(kinds)
            self.problem(
                kinds[0],
                "required" if len(kinds) == 1 else f"at least one of {alternatives} is required",
            )

    def _consent_present(self) -> bool:
        return self.present("consent") or any(map(self.present, _FLAT_CONSENT_DETAILS))


def _sha256_hex(text: str) -> str:
    if not _SHA256_HEX.fullmatch(text):
        raise ValueError(
            "expected the SHA-256 of the normalized value as 64 hexadecimal characters "
            "(docs/api.md, 'Hashing identifiers')"
        )
    return text.lower()


def _present(value: object) -> bool:
    """Whether a value counts as sent: not null and not an empty or blank string."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _scalar_text(value: object, *, numbers: bool = False) -> str | None:
    """A string value, stripped; ``None`` when absent or empty. With ``numbers``, integers
    (and floats with an integral value, as spreadsheets export them) are accepted too."""
    if isinstance(value, str):
        return value.strip() or None
    if value is None:
        return None
    if numbers and not isinstance(value, bool):
        if isinstance(value, int):
            if abs(value) >= 10**64:  # str() of a huge int is slow, then refused as too long
                raise ValueError("too long")
            return str(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
    raise ValueError("expected a string")


def _verbatim(max_chars: int) -> Callable[[str], str]:
    """Ids and references: kept as sent (trimmed), on one line, at most ``max_chars``."""

    def check(text: str) -> str:
        if inline_control_char(text) is not None:
            raise ValueError("contains control characters")
        if len(text) > max_chars:
            raise ValueError(f"too long (at most {max_chars} characters)")
        return text

    return check


def _line(max_chars: int) -> Callable[[str], str]:
    return lambda text: clean_line(text, max_chars=max_chars)


# The field checkers, made once: a parse runs per lead, and making closures per parse showed
# in the profile of the batch endpoint.
_check_id = _verbatim(MAX_ID_CHARS)
_check_ref = _verbatim(MAX_REF_CHARS)
_check_consent_version = _verbatim(MAX_CONSENT_VERSION_CHARS)
_check_certificate = _verbatim(MAX_CERTIFICATE_CHARS)
_clean_place = _line(MAX_PLACE_CHARS)


def _consent_text(text: str) -> str:
    """The consent wording as shown: verbatim (line breaks kept), NFC."""
    if has_control_chars(text):
        raise ValueError("contains control characters")
    text = unicodedata.normalize("NFC", text)
    if len(text) > MAX_CONSENT_TEXT_CHARS:
        raise ValueError(f"too long (at most {MAX_CONSENT_TEXT_CHARS} characters)")
    return text


def _ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        # ipaddress's own message quotes the value.
        raise ValueError("not a valid IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _boolean(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(_BOOLEAN_HINT)


def _epoch_s(value: object, now_s: float) -> float | None:
    """An instant as epoch seconds, from ISO 8601 with an offset or epoch seconds/milliseconds."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected an ISO 8601 date-time or epoch seconds")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    "not a date-time: expected ISO 8601 with a UTC offset, "
                    "or epoch seconds or milliseconds"
                ) from None
            if moment.tzinfo is None:
                raise ValueError("needs a UTC offset (like Z or +01:00)")
            seconds = moment.timestamp()
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError("not a finite number")
    if abs(seconds) >= _EPOCH_MS_FROM:
        seconds /= 1000.0
    if seconds < EARLIEST_CONSENT_AT:
        raise ValueError("is before 2000: epoch seconds or milliseconds expected")
    if seconds > now_s + CONSENT_CLOCK_SKEW_S:
        raise ValueError("is in the future")
    return seconds


def _extra_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if inline_control_char(text) is not None:
            raise ValueError("contains control characters")
    else:
        raise ValueError("expected a string")
    if len(text) > MAX_EXTRA_VALUE_CHARS:
        raise ValueError(f"too long (at most {MAX_EXTRA_VALUE_CHARS} characters)")
    return text


def _field_name(key: object) -> str:
    """A key as a problem's field: long or odd keys are cut, so the answer stays small."""
    name = str(key)
    return name if len(name) <= 64 else name[:64] + "…"
