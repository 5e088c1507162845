"""The YAML configuration: every rule refuses a bad value at its exact path, all at once."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import pytest

from gateway.config.check import hash_api_key
from gateway.config.load import load_config, parse_config
from gateway.config.model import (
    CalendarPeriod,
    CampaignKind,
    CapSubject,
    Config,
    DedupScope,
    PressureUnit,
    ServerSettings,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.types import AdvertiserId, CampaignId, ChannelId, PartnerId

EXAMPLE: Final = Path(__file__).parents[2] / "examples" / "leadgate.yaml"
DAY: Final = 86_400
HASH_1: Final = hash_api_key("key-one")
HASH_2: Final = hash_api_key("key-two")
_DELETE: Final = object()

Step = str | int


def _base() -> dict[str, Any]:
    """A small valid config; each case below breaks one thing in a fresh copy."""
    return {
        "server": {"max_body_bytes": 1024},
        "channels": [{"id": "email", "name": "Emailing"}, {"id": "cashback"}],
        "advertisers": [{"id": "acme", "name": "ACME"}],
        "contact_pressure": {"limit": 3, "window": "30d"},
        "campaigns": [
            {
                "id": "always",
                "advertiser": "acme",
                "kind": "always_on",
                "dedup": [
                    {"scope": "advertiser", "window": "30d", "channels": {"cashback": "7d"}},
                ],
                "caps": [{"subject": "campaign", "window": "day", "limit": 200}],
            },
            {
                "id": "peak",
                "advertiser": "acme",
                "kind": "peak",
                "start": "2026-11-20T00:00:00+01:00",
                "end": "2026-11-30T23:59:59+01:00",
            },
        ],
        "partners": [
            {
                "id": "p1",
                "api_keys": [HASH_1],
                "channels": ["email"],
                "campaigns": ["always", "peak"],
            },
            {
                "id": "p2",
                "api_keys": [HASH_2],
                "channels": ["cashback"],
                "campaigns": ["always"],
                "rate_limit": {"per_s": 10, "burst": 20},
            },
        ],
    }


def _mutate(data: Any, at: tuple[Step, ...], value: object) -> None:
    *parents, last = at
    for step in parents:
        data = data[step]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


def _issues(data: object) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    return raised.value.issues


C0: Final = ("campaigns", 0)
C1: Final = ("campaigns", 1)
P0: Final = ("partners", 0)
P1: Final = ("partners", 1)
LONG_ID: Final = "a" * 64

# (where to change the base config, the bad value, the issue path, a fragment of its message)
CASES: Final[list[tuple[tuple[Step, ...], object, str, str]]] = [
    # structure: unknown keys (typos), missing keys, wrong types
    (("chanels",), [], "chanels", "unknown key (did you mean 'channels'?)"),
    (("partners",), _DELETE, "partners", "required key is missing"),
    (("campaigns",), {"id": "x"}, "campaigns", "expected a list of campaigns, got a mapping"),
    ((*C0,), "always", "campaigns[0]", "expected a campaign (a mapping), got 'always'"),
    ((*C0, "capz"), [], "campaigns[0].capz", "unknown key (did you mean 'caps'?)"),
    ((*C0, "advertiser"), _DELETE, "campaigns[0].advertiser", "required key is missing"),
    (
        (*P0, "campaigns"),
        "abc",
        "partners[0].campaigns",
        "expected a list of campaign ids, got 'abc'",
    ),
    # server
    (("server", "max_body_bytes"), 0, "server.max_body_bytes", "0 must be at least 1"),
    (
        ("server", "max_body_bytes"),
        "big",
        "server.max_body_bytes",
        "expected a whole number, got 'big'",
    ),
    (("server", "idempotency_ttl_s"), -5, "server.idempotency_ttl_s", "-5 must be at least 1"),
    (("server", "max_body"), 5, "server.max_body", "unknown key"),
    (("server",), [1], "server", "expected a mapping, got a list"),
    # ids: Redis keys and metric labels
    (("channels", 0, "id"), "E-mail", "channels[0].id", "'E-mail' is not a valid channel id"),
    (("channels", 0, "id"), "-email", "channels[0].id", "'-email' is not a valid channel id"),
    (("channels", 0, "id"), "email\n", "channels[0].id", "is not a valid channel id"),
    (("channels", 0, "id"), "e mail", "channels[0].id", "is not a valid channel id"),
    (("channels", 0, "id"), "e:mail", "channels[0].id", "is not a valid channel id"),
    (("channels", 0, "id"), LONG_ID, "channels[0].id", "is not a valid channel id"),
    (("channels", 0, "id"), 7, "channels[0].id", "7 is not a valid channel id"),
    (("advertisers", 0, "id"), "ACME", "advertisers[0].id", "'ACME' is not a valid advertiser id"),
    ((*C0, "id"), "Always", "campaigns[0].id", "'Always' is not a valid campaign id"),
    ((*P0, "id"), "p{1}", "partners[0].id", "'p{1}' is not a valid partner id"),
    # ids unique per kind
    (("channels", 1, "id"), "email", "channels[1].id", "duplicate channel id 'email'"),
    ((*C1, "id"), "always", "campaigns[1].id", "duplicate campaign id 'always'"),
    ((*P1, "id"), "p1", "partners[1].id", "duplicate partner id 'p1'"),
    # names
    (("channels", 0, "name"), "", "channels[0].name", "expected a display name"),
    (("advertisers", 0, "name"), ["A"], "advertisers[0].name", "got a list"),
    # campaigns
    ((*C0, "advertiser"), "acme2", "campaigns[0].advertiser", "unknown advertiser 'acme2'"),
    ((*C0, "kind"), "permanent", "campaigns[0].kind", "'permanent' is not one of always_on, peak"),
    ((*C1, "start"), _DELETE, "campaigns[1].start", "a peak campaign needs a start"),
    ((*C1, "end"), _DELETE, "campaigns[1].end", "a peak campaign needs a start and an end"),
    ((*C1, "start"), "2026-12-01T00:00:00+01:00", "campaigns[1].end", "is not after start"),
    ((*C1, "end"), "2026-11-20T00:00:00+01:00", "campaigns[1].end", "is not after start"),
    ((*C1, "start"), "next monday", "campaigns[1].start", "'next monday' is not an ISO 8601"),
    ((*C1, "end"), "2026-13-01", "campaigns[1].end", "'2026-13-01' is not an ISO 8601"),
    ((*C1, "end"), 1764543599, "campaigns[1].end", "1764543599 is not an ISO 8601"),
    ((*C0, "timezone"), "Mars/Olympus", "campaigns[0].timezone", "'Mars/Olympus' is not an IANA"),
    ((*C0, "timezone"), "../../etc/passwd", "campaigns[0].timezone", "is not an IANA time zone"),
    ((*C0, "timezone"), "Europe", "campaigns[0].timezone", "is not an IANA time zone"),
    ((*C0, "timezone"), "europe/paris", "campaigns[0].timezone", "is not an IANA time zone"),
    ((*C0, "identity"), ["fax"], "campaigns[0].identity[0]", "'fax' is not one of email, phone"),
    ((*C0, "identity"), ["first_name"], "campaigns[0].identity[0]", "is not one of email, phone"),
    ((*C0, "identity"), [], "campaigns[0].identity", "needs at least one of email, phone"),
    ((*C0, "identity"), "email", "campaigns[0].identity", "expected a list of fields"),
    ((*C0, "identity"), ["email", "email"], "campaigns[0].identity[1]", "'email' is listed twice"),
    ((*C0, "required"), ["zip"], "campaigns[0].required[0]", "'zip' is not one of email, phone"),
    ((*C0, "required"), "email", "campaigns[0].required", "expected a list of fields"),
    ((*C0, "phone_region"), "XX", "campaigns[0].phone_region", "'XX' is not a phone region code"),
    ((*C0, "phone_region"), "FRA", "campaigns[0].phone_region", "'FRA' is not a phone region"),
    ((*C0, "phone_region"), "fr", "campaigns[0].phone_region", "(write 'FR')"),
    ((*C0, "contact_pressure"), "no", "campaigns[0].contact_pressure", "expected true or false"),
    ((*C0, "cpl"), -1, "campaigns[0].cpl", "-1 must be 0 or more"),
    ((*C0, "cpl"), "8€", "campaigns[0].cpl", "expected a number, got '8€'"),
    ((*C0, "cpl"), float("nan"), "campaigns[0].cpl", "expected a number, got nan"),
    # dedup
    ((*C0, "dedup"), {"scope": "campaign"}, "campaigns[0].dedup", "expected a list of"),
    ((*C0, "dedup", 0, "scope"), "world", "campaigns[0].dedup[0].scope", "'world' is not one of"),
    (
        (*C0, "dedup", 0, "window"),
        "1x",
        "campaigns[0].dedup[0].window",
        "'1x' is not a duration like 30m, 1h, 1d",
    ),
    ((*C0, "dedup", 0, "window"), True, "campaigns[0].dedup[0].window", "True is not a duration"),
    ((*C0, "dedup", 0, "window"), 0, "campaigns[0].dedup[0].window", "0 is not a positive"),
    (
        (*C0, "dedup", 0, "window"),
        _DELETE,
        "campaigns[0].dedup[0].window",
        "required key is missing",
    ),
    (
        (*C0, "dedup", 0, "widnow"),
        "1d",
        "campaigns[0].dedup[0].widnow",
        "unknown key (did you mean 'window'?)",
    ),
    (
        (*C0, "dedup", 0, "channels"),
        {"cashbak": "7d"},
        "campaigns[0].dedup[0].channels.cashbak",
        "unknown channel 'cashbak'",
    ),
    (
        (*C0, "dedup", 0, "channels", "cashback"),
        "7days",
        "campaigns[0].dedup[0].channels.cashback",
        "'7days' is not a duration",
    ),
    (
        (*C0, "dedup", 0, "channels"),
        ["cashback"],
        "campaigns[0].dedup[0].channels",
        "expected a mapping of channel: window",
    ),
    (
        (*C0, "dedup"),
        [{"scope": "campaign", "window": "1d"}, {"scope": "campaign", "window": "2d"}],
        "campaigns[0].dedup[1].scope",
        "scope 'campaign' already has a rule at campaigns[0].dedup[0]",
    ),
    # caps
    (
        (*C0, "caps", 0, "subject"),
        "publisher",
        "campaigns[0].caps[0].subject",
        "'publisher' is not one of campaign, partner, channel, advertiser",
    ),
    (
        (*C0, "caps", 0, "window"),
        "1x",
        "campaigns[0].caps[0].window",
        "'1x' is not a duration like 30m, 1h, 1d",
    ),
    (
        (*C0, "caps", 0, "window"),
        "daily",
        "campaigns[0].caps[0].window",
        "nor one of hour, day, week, month",
    ),
    ((*C0, "caps", 0, "limit"), 0, "campaigns[0].caps[0].limit", "0 must be at least 1"),
    (
        (*C0, "caps", 0, "limit"),
        10**400,
        "campaigns[0].caps[0].limit",
        "must be at most 9,007,199,254,740,991",
    ),
    (
        (*C0, "caps", 0, "limit"),
        "lots",
        "campaigns[0].caps[0].limit",
        "expected a whole number, got 'lots'",
    ),
    (
        (*C0, "caps", 0, "limit"),
        2.5,
        "campaigns[0].caps[0].limit",
        "expected a whole number, got 2.5",
    ),
    (
        (*C0, "caps", 0, "limit"),
        True,
        "campaigns[0].caps[0].limit",
        "expected a whole number, got True",
    ),
    (
        (*C0, "caps", 0, "limt"),
        5,
        "campaigns[0].caps[0].limt",
        "unknown key (did you mean 'limit'?)",
    ),
    (
        (*C0, "caps"),
        [
            {"subject": "campaign", "window": "day", "limit": 1},
            {"subject": "campaign", "window": "day", "limit": 2},
        ],
        "campaigns[0].caps[1]",
        "a second cap.campaign.day cap (the first is campaigns[0].caps[0])",
    ),
    (
        (*C0, "caps"),
        [
            {"subject": "partner", "window": "1h", "limit": 1},
            {"subject": "partner", "window": "2h", "limit": 2},
        ],
        "campaigns[0].caps[1]",
        "a second cap.partner.rolling cap",
    ),
    # pings (issue 20)
    ((*C0, "ping_ttl_s"), 4, "campaigns[0].ping_ttl_s", "4 is not a whole number of seconds"),
    ((*C0, "ping_ttl_s"), 3601, "campaigns[0].ping_ttl_s", "from 5 to 3600 (0: no pings)"),
    ((*C0, "ping_ttl_s"), "60s", "campaigns[0].ping_ttl_s", "'60s' is not a whole number"),
    ((*C0, "ping_ttl_s"), True, "campaigns[0].ping_ttl_s", "True is not a whole number"),
    ((*C0, "ping_ttl_s"), 2.5, "campaigns[0].ping_ttl_s", "2.5 is not a whole number"),
    # network contact pressure
    (("contact_pressure", "limit"), 0, "contact_pressure.limit", "0 must be at least 1"),
    (("contact_pressure", "window"), "1x", "contact_pressure.window", "'1x' is not a duration"),
    (("contact_pressure", "window"), _DELETE, "contact_pressure.window", "required key is missing"),
    (
        ("contact_pressure", "per"),
        "person",
        "contact_pressure.per",
        "'person' is not one of advertiser, campaign",
    ),
    (("contact_pressure", "limt"), 2, "contact_pressure.limt", "unknown key"),
    # partners
    ((*P0, "api_keys"), [], "partners[0].api_keys", "needs at least one key hash"),
    ((*P0, "api_keys"), HASH_1, "partners[0].api_keys", "expected a list of sha256:<hex>"),
    ((*P0, "api_keys", 0), HASH_1.upper(), "partners[0].api_keys[0]", "64 lower-case hex digits"),
    (
        (*P0, "api_keys", 0),
        HASH_1.removeprefix("sha256:"),
        "partners[0].api_keys[0]",
        "expected 'sha256:'",
    ),
    ((*P0, "api_keys", 0), HASH_1[:-1], "partners[0].api_keys[0]", "expected 'sha256:'"),
    ((*P0, "api_keys"), [HASH_1, HASH_1], "partners[0].api_keys[1]", "listed twice"),
    ((*P1, "api_keys"), [HASH_1], "partners[1].api_keys[0]", "already used by partner 'p1'"),
    ((*P0, "channels"), [], "partners[0].channels", "needs at least one channel"),
    ((*P0, "channels"), ["fax"], "partners[0].channels[0]", "unknown channel 'fax'"),
    ((*P0, "channels"), ["email", "email"], "partners[0].channels[1]", "'email' is listed twice"),
    ((*P0, "channels"), [3], "partners[0].channels[0]", "expected a channel id, got 3"),
    ((*P0, "campaigns"), ["nope"], "partners[0].campaigns[0]", "unknown campaign 'nope'"),
    ((*P0, "campaigns"), ["peak", "peak"], "partners[0].campaigns[1]", "'peak' is listed twice"),
    ((*P1, "rate_limit"), "fast", "partners[1].rate_limit", "expected a mapping, got 'fast'"),
    ((*P1, "rate_limit", "per_s"), 0, "partners[1].rate_limit.per_s", "0 must be more than 0"),
    (
        (*P1, "rate_limit", "per_s"),
        -2.5,
        "partners[1].rate_limit.per_s",
        "-2.5 must be more than 0",
    ),
    ((*P1, "rate_limit", "burst"), 0, "partners[1].rate_limit.burst", "0 must be at least 1"),
    (
        (*P1, "rate_limit", "burst"),
        _DELETE,
        "partners[1].rate_limit.burst",
        "required key is missing",
    ),
]


@pytest.mark.parametrize(("at", "value", "path", "fragment"), CASES, ids=[c[2] for c in CASES])
def test_a_bad_value_is_reported_at_its_path(
    at: tuple[Step, ...], value: object, path: str, fragment: str
) -> None:
    data = _base()
    _mutate(data, at, value)
    issues = _issues(data)
    assert any(i.path == path and fragment in i.message for i in issues), issues


def test_the_base_config_is_valid() -> None:
    config = parse_config(_base(), checksum="abc")
    assert config.checksum == "abc"
    assert list(config.campaigns) == [CampaignId("always"), CampaignId("peak")]
    assert isinstance(config.campaigns, dict)
    assert list(config.partners) == [PartnerId("p1"), PartnerId("p2")]


def test_every_problem_is_reported_in_one_error() -> None:
    data = _base()
    _mutate(data, ("server", "max_body_bytes"), 0)
    _mutate(data, (*C0, "caps", 0, "window"), "1x")
    _mutate(data, (*C0, "capz"), [])
    _mutate(data, (*C1, "timezone"), "Mars/Olympus")
    _mutate(data, (*P1, "campaigns"), "abc")
    paths = [issue.path for issue in _issues(data)]
    assert paths == [
        "server.max_body_bytes",
        "campaigns[0].capz",
        "campaigns[0].caps[0].window",
        "campaigns[1].timezone",
        "partners[1].campaigns",
    ]


def test_the_error_message_lists_every_issue_as_path_and_message() -> None:
    data = _base()
    _mutate(data, (*C0, "caps", 0, "window"), "1x")
    _mutate(data, (*C0, "kind"), "forever")
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert str(raised.value).splitlines() == [
        "campaigns[0].kind: 'forever' is not one of always_on, peak",
        "campaigns[0].caps[0].window: '1x' is not a duration like 30m, 1h, 1d,"
        " nor one of hour, day, week, month",
    ]


@pytest.mark.parametrize("data", [None, [], "channels: []", 3])
def test_a_document_that_is_not_a_mapping_is_refused(data: object) -> None:
    (issue,) = _issues(data)
    assert issue.path == ""
    assert issue.message.startswith("expected a mapping with channels, advertisers, campaigns")


def test_a_plain_api_key_pasted_by_mistake_is_not_echoed() -> None:
    data = _base()
    _mutate(data, (*P0, "api_keys"), ["demo-very-secret-key"])
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert "demo-very-secret-key" not in str(raised.value)
    assert [i.path for i in raised.value.issues] == ["partners[0].api_keys[0]"]


def test_defaults() -> None:
    data = _base()
    del data["server"]
    del data["contact_pressure"]
    config = parse_config(data)
    campaign = config.campaigns[CampaignId("always")]
    assert config.server == ServerSettings()
    assert config.contact_pressure is None
    assert campaign.name == "always"
    assert campaign.timezone == ZoneInfo("UTC")
    assert campaign.identity_fields == ("email", "phone")
    assert campaign.required_fields == ("email",)
    assert campaign.phone_region == "FR"
    assert campaign.contact_pressure is True
    assert campaign.cpl is None
    assert campaign.start_at is None
    assert campaign.end_at is None
    assert campaign.ping_ttl_s == 0
    assert config.channels[ChannelId("cashback")].name == "cashback"
    assert config.partners[PartnerId("p1")].rate_limit is None
    assert config.partners[PartnerId("p1")].api_key_hashes == (HASH_1.removeprefix("sha256:"),)


@pytest.mark.parametrize("seconds", [0, 5, 60, 3600])
def test_a_campaign_takes_pings_for_5_s_to_an_hour(seconds: int) -> None:
    data = _base()
    data["campaigns"][0]["ping_ttl_s"] = seconds

    assert parse_config(data).campaigns[CampaignId("always")].ping_ttl_s == seconds


def test_empty_optional_sections_count_as_absent() -> None:
    # `server:` with every line under it commented out is None in YAML.
    data = _base()
    data["server"] = None
    data["contact_pressure"] = None
    data["campaigns"][0]["caps"] = None
    config = parse_config(data)
    assert config.server == ServerSettings()
    assert config.contact_pressure is None
    assert config.campaigns[CampaignId("always")].caps == ()


def test_an_always_on_campaign_may_have_a_start_and_an_end() -> None:
    data = _base()
    data["campaigns"][0]["start"] = "2026-01-01T00:00:00Z"
    campaign = parse_config(data).campaigns[CampaignId("always")]
    assert campaign.kind is CampaignKind.ALWAYS_ON
    assert campaign.start_at == datetime.fromisoformat("2026-01-01T00:00:00+00:00").timestamp()
    assert campaign.end_at is None


PARIS: Final = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("start", "end", "start_at", "end_at"),
    [
        # with an offset: that instant
        (
            "2026-11-20T00:00:00+01:00",
            "2026-11-30T23:59:59+01:00",
            datetime(2026, 11, 20, tzinfo=PARIS),
            datetime(2026, 11, 30, 23, 59, 59, tzinfo=PARIS),
        ),
        # naive: in the campaign's time zone (summer time here)
        (
            "2026-06-01T09:00:00",
            datetime(2026, 6, 30, 18, 0),  # what YAML makes of `2026-06-30 18:00:00`
            datetime(2026, 6, 1, 9, tzinfo=PARIS),
            datetime(2026, 6, 30, 18, tzinfo=PARIS),
        ),
        # bare dates: whole days, the end day included
        (
            "2026-06-01",
            "2026-08-31",
            datetime(2026, 6, 1, tzinfo=PARIS),
            datetime(2026, 9, 1, tzinfo=PARIS),
        ),
    ],
)
def test_peak_start_and_end(
    start: object, end: object, start_at: datetime, end_at: datetime
) -> None:
    data = _base()
    data["campaigns"][1] |= {"start": start, "end": end, "timezone": "Europe/Paris"}
    campaign = parse_config(data).campaigns[CampaignId("peak")]
    assert campaign.start_at == start_at.timestamp()
    assert campaign.end_at == end_at.timestamp()


def test_a_one_day_peak_given_as_the_same_date_is_valid() -> None:
    data = _base()
    data["campaigns"][1] |= {"start": "2026-11-27", "end": "2026-11-27"}
    campaign = parse_config(data).campaigns[CampaignId("peak")]
    assert campaign.end_at is not None
    assert campaign.start_at is not None
    assert campaign.end_at - campaign.start_at == DAY


# --- the file ------------------------------------------------------------------------------


def test_load_config_computes_the_checksum_of_the_bytes(tmp_path: Path) -> None:
    """Of the file and of the rule packs it names: a reload notices an edited pack."""
    (tmp_path / "examples").mkdir()
    path = tmp_path / "examples" / "leadgate.yaml"
    path.write_bytes(EXAMPLE.read_bytes())
    shutil.copytree(EXAMPLE.parents[1] / "rules", tmp_path / "rules")
    first = load_config(path).checksum
    assert first == load_config(EXAMPLE).checksum
    assert load_config(str(path)).checksum == first
    assert first != hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()  # the packs count
    pack = tmp_path / "rules" / "default.yaml"
    pack.write_text(pack.read_text() + "\n# edited\n")
    assert load_config(path).checksum != first
    simple = tmp_path / "simple.yaml"
    simple.write_text(
        "channels: [{id: email}]\nadvertisers: [{id: a}]\ncampaigns: []\npartners: []\n"
    )
    assert load_config(simple).checksum == hashlib.sha256(simple.read_bytes()).hexdigest()


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    (issue,) = raised.value.issues
    assert issue.path == str(path)
    assert "No such file or directory" in issue.message


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("channels:\n  - {id: email\nadvertisers: []\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    (issue,) = raised.value.issues
    assert issue.path.startswith(f"{path}:3:")
    assert issue.message.startswith("YAML syntax error")


def test_a_repeated_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        "campaigns:\n"
        "  - id: c\n"
        "    caps: [{subject: campaign, window: day, limit: 5}]\n"
        "    caps: []\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    (issue,) = raised.value.issues
    assert issue.path == f"{path}:4:5"
    assert "duplicate key 'caps' (first at line 3)" in issue.message


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        EXAMPLE.read_text(encoding="utf-8")
        + "x-defaults: &d {subject: campaign, window: day, limit: 5}\n"
    )
    # The unknown top-level key is reported, but the anchor itself parses.
    with pytest.raises(ConfigError, match="x-defaults: unknown key"):
        load_config(path)
    merged = tmp_path / "merged.yaml"
    merged.write_text("a: &d {x: 1, y: 2}\nb: {<<: *d, x: 3}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(merged)
    assert all("duplicate key" not in i.message for i in raised.value.issues)


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("advertisers: [{id: a, name: Énergie}]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- the example ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Config:
    return load_config(EXAMPLE)


def test_the_example_defines_the_demo_ids(example: Config) -> None:
    assert list(example.channels) == [
        "email", "coreg", "comparator", "cashback", "site", "display", "social", "search"
    ]  # fmt: skip
    assert {a.id: a.name for a in example.advertisers.values()} == {
        "acme-energy": "ACME Énergie",
        "novabank": "NovaBank",
        "solaris": "Solaris Solaire",
        "helio-install": "Hélio Install",
        "voltaic-call": "Voltaic — call centre",
    }
    assert list(example.campaigns) == [
        "acme-always-on", "acme-black-friday", "acme-summer-2026", "novabank-credit",
        "solaris-install", "solar-quotes", "energy-week-2026",
    ]  # fmt: skip
    assert {p.id: p.name for p in example.partners.values()} == {
        "p-mailfox": "MailFox",
        "p-coregia": "Coregia",
        "p-cashmoon": "CashMoon",
        "p-compario": "Compario",
    }


def test_the_example_network_contact_pressure(example: Config) -> None:
    pressure = example.contact_pressure
    assert pressure is not None
    assert (pressure.limit, pressure.per, pressure.window_s) == (
        2,
        PressureUnit.ADVERTISER,
        30 * DAY,
    )


def test_the_example_always_on_campaign(example: Config) -> None:
    campaign = example.campaigns[CampaignId("acme-always-on")]
    assert campaign.advertiser == AdvertiserId("acme-energy")
    assert campaign.kind is CampaignKind.ALWAYS_ON
    assert campaign.timezone == PARIS
    assert campaign.identity_fields == ("email", "phone")
    assert campaign.required_fields == ("email", "first_name")
    assert campaign.phone_region == "FR"
    assert campaign.cpl == 8.0
    advertiser_rule, campaign_rule = campaign.dedup
    assert advertiser_rule.scope is DedupScope.ADVERTISER
    assert advertiser_rule.window_for(ChannelId("cashback")) == 7 * DAY
    assert advertiser_rule.window_for(ChannelId("email")) == 30 * DAY
    assert (campaign_rule.scope, campaign_rule.window_s) == (DedupScope.CAMPAIGN, 90 * DAY)
    day_cap, partner_cap = campaign.caps
    assert (day_cap.subject, day_cap.window.period, day_cap.limit) == (
        CapSubject.CAMPAIGN,
        CalendarPeriod.DAY,
        500,
    )
    assert (partner_cap.subject, partner_cap.window.rolling_s, partner_cap.limit) == (
        CapSubject.PARTNER,
        3600,
        100,
    )
    assert [cap.reason for cap in campaign.caps] == ["cap.campaign.day", "cap.partner.rolling"]


def test_the_example_peaks(example: Config) -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=PARIS).timestamp()
    black_friday = example.campaigns[CampaignId("acme-black-friday")]
    assert black_friday.kind is CampaignKind.PEAK
    assert black_friday.start_at == datetime(2026, 11, 1, tzinfo=PARIS).timestamp()
    assert black_friday.is_active(now)
    assert black_friday.cpl == 12.5
    assert black_friday.required_fields == ("email", "first_name", "postal_code")
    assert [(d.scope, d.window_s) for d in black_friday.dedup] == [
        (DedupScope.ADVERTISER, 30 * DAY),
        (DedupScope.CAMPAIGN, 30 * DAY),
    ]
    assert [(c.reason, c.limit) for c in black_friday.caps] == [
        ("cap.campaign.day", 6),
        ("cap.partner.rolling", 4),
    ]
    summer = example.campaigns[CampaignId("acme-summer-2026")]
    assert summer.kind is CampaignKind.PEAK
    assert summer.end_at == datetime(2026, 9, 1, tzinfo=PARIS).timestamp()
    assert not summer.is_active(now)


def test_the_example_bank_campaign(example: Config) -> None:
    campaign = example.campaigns[CampaignId("novabank-credit")]
    assert campaign.advertiser == AdvertiserId("novabank")
    assert campaign.required_fields == ("email", "phone", "last_name")
    assert campaign.cpl == 25
    assert campaign.contact_pressure is True
    assert [(d.scope, d.window_s) for d in campaign.dedup] == [
        (DedupScope.CAMPAIGN, 60 * DAY),
        (DedupScope.CHANNEL, 14 * DAY),
        (DedupScope.NETWORK, 1 * DAY),
    ]
    assert [(c.reason, c.limit) for c in campaign.caps] == [
        ("cap.advertiser.month", 10_000),
        ("cap.channel.day", 3),
    ]


@pytest.mark.parametrize(
    ("partner", "keys", "channels", "campaigns"),
    [
        (
            "p-mailfox",
            ["demo-mailfox-key"],
            ["email"],
            [
                "acme-always-on",
                "acme-black-friday",
                "acme-summer-2026",
                "novabank-credit",
                "solaris-install",
                "solar-quotes",
                "energy-week-2026",
            ],
        ),
        (
            "p-coregia",
            ["demo-coregia-key"],
            ["coreg"],
            [
                "acme-always-on",
                "acme-black-friday",
                "novabank-credit",
                "solar-quotes",
                "energy-week-2026",
            ],
        ),
        (
            "p-cashmoon",
            ["demo-cashmoon-key"],
            ["cashback"],
            ["acme-always-on", "acme-black-friday", "novabank-credit"],
        ),
        (
            "p-compario",
            ["demo-compario-key", "demo-compario-key-2"],
            ["comparator", "site"],
            ["acme-always-on", "novabank-credit"],
        ),
    ],
)
def test_the_example_partners(
    example: Config, partner: str, keys: list[str], channels: list[str], campaigns: list[str]
) -> None:
    found = example.partners[PartnerId(partner)]
    assert found.api_key_hashes == tuple(hash_api_key(k).removeprefix("sha256:") for k in keys)
    assert list(found.channels) == channels
    assert list(found.campaigns) == campaigns
    assert found.default_channel == channels[0]


def test_the_example_rate_limit(example: Config) -> None:
    rate = example.partners[PartnerId("p-coregia")].rate_limit
    assert rate is not None
    assert (rate.per_s, rate.burst) == (200, 400)
