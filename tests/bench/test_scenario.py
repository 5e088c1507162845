"""Scenario files: every shipped one parses; a broken one is refused with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.generate import LeadGenerator
from bench.scenario import SCENARIO_DIR, Client, Store, load_scenario, parse_scenario
from gateway.config.reader import load_yaml
from gateway.errors import ConfigError

SHIPPED = sorted(p for p in SCENARIO_DIR.glob("*.yaml") if p.stem != "gateway")


def test_the_default_and_item_scenarios_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"single", "batch", "smoke", "memory", "workers2", "one-connection", "c1000",
            "open-loop", "single-new", "sold-first", "waterfall"} <= names  # fmt: skip


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_parses(path: Path) -> None:
    scenario = load_scenario(str(path))
    assert scenario.name == path.stem
    assert scenario.duplicate_share + scenario.invalid < 1
    assert scenario.body_count() >= 1


def test_a_full_scenario_is_read() -> None:
    scenario = parse_scenario(
        load_yaml(
            """
            client: aiohttp
            load: {rate: 250, max_in_flight: 50}
            duration_s: 3
            batch: 10
            workers: 2
            store: embedded
            partners: {p-alpha: 2, p-beta: 1}
            channels: {email: 1, coreg: 1}
            duplicates: {same: 0.1, respelled: 0.05, other_channel: 0}
            invalid: 0.02
            seed: 7
            timeline: false
            """
        ),
        "x",
    )
    assert scenario.client is Client.AIOHTTP
    assert scenario.open_loop
    assert (scenario.rate, scenario.max_in_flight, scenario.concurrency) == (250.0, 50, None)
    assert (scenario.batch, scenario.workers, scenario.store) == (10, 2, Store.EMBEDDED)
    assert scenario.duplicates == {"same": 0.1, "respelled": 0.05}  # zero shares dropped
    assert scenario.body_count() == 1000  # 250/s x 3 s x 1.2 = 901, at least 1000
    assert scenario.timeline is False
    assert parse_scenario({}, "x").timeline is True  # scraped unless a scenario says not


def test_the_latency_scenarios_are_not_scraped_during_their_run() -> None:
    # Scraping /metrics each second raised the one-connection p99 (BENCHMARKS.md).
    assert not load_scenario("one-connection").timeline
    assert not load_scenario("one-connection-embedded").timeline
    assert load_scenario("single").timeline


def test_every_problem_is_reported_with_its_path() -> None:
    data = load_yaml(
        """
        clinet: wrk
        load: {concurrency: 8, rate: 100}
        batch: 5000
        store: disk
        partners: {p-alpha: 1, p-nobody: 1}
        duplicates: {same: 0.7, respelled: 0.3}
        invalid: -1
        timeline: "yes"
        campaign: elsewhere
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "broken")
    found = {(issue.path, issue.message) for issue in caught.value.issues}
    paths = {path for path, _ in found}
    assert ("clinet", "unknown key (did you mean 'client'?)") in found
    assert "load" in paths  # both loops
    assert ("batch", "5000 is more than the gateway's 1000 leads per batch") in found
    assert ("store", "'disk' is not one of redis, embedded") in found
    assert any(p == "partners.p-nobody" and "unknown key" in m for p, m in found)
    assert "invalid" in paths
    assert "duplicates" in paths  # shares add up to 1 or more
    assert ("timeline", "expected true or false, got 'yes'") in found
    assert ("campaign", "'elsewhere' is not one of bench, bench-sold, bench-waterfall") in found


def test_the_distribution_scenarios_post_to_the_campaigns_sold_to_buyers() -> None:
    for name, campaign in (("sold-first", "bench-sold"), ("waterfall", "bench-waterfall")):
        scenario = load_scenario(name)
        assert scenario.campaign == campaign
        assert not scenario.duplicates  # new people: each is sold to the buyer it is meant for
        lead = LeadGenerator(scenario).lead("p-alpha")
        assert lead.lead["campaign"] == campaign


def test_open_loop_needs_the_aiohttp_client() -> None:
    with pytest.raises(ConfigError, match="needs client: aiohttp"):
        parse_scenario({"client": "wrk", "load": {"rate": 100}}, "x")


def test_a_partner_needs_one_of_the_scenario_channels() -> None:
    # p-beta posts through coreg and comparator only.
    with pytest.raises(ConfigError, match="posts through none of the scenario's channels"):
        parse_scenario({"partners": {"p-beta": 1}, "channels": {"email": 1}}, "x")


def test_a_memory_scenario_sends_new_people_only() -> None:
    with pytest.raises(ConfigError, match="new people only"):
        parse_scenario({"identities": 1000, "invalid": 0.1}, "x")


def test_an_unknown_scenario_name_lists_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"known: .*single"):
        load_scenario("no-such-scenario")
