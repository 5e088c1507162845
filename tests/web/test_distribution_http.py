"""Campaigns sold to buyers, through the HTTP API on both stores: what publishers are told
(buyers, their names only when the campaign shows them, the payout, the codes of an unsold
lead), the waterfall past a closed, filtered, capped or disabled buyer, POST, GET postback and
batch alike; each buyer's feedback on its own sale; the metrics, caps and report per buyer.
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.types import AdvertiserId

from .conftest import DAY_S, Gateway, GatewayFactory, key_hash, person, sold_network
from .test_openapi import assert_matches_spec

B_KEYS = {"b-one": "test-key-b-one-feedback", "b-two": "test-key-b-two-feedback"}


def network_with_keys() -> dict[str, Any]:
    config = sold_network()
    for advertiser in config["advertisers"]:
        if advertiser["id"] in B_KEYS:
            advertiser["api_keys"] = [key_hash(B_KEYS[advertiser["id"]])]
    return config


def metric(gw: Gateway, name: str, **labels: str) -> float:
    text = gw.observer.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


async def test_an_exclusive_sale_tells_the_count_and_payout_never_the_buyer(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())

    answer = await gw.decide("p-mail", person(campaign="sold-excl", ref="r-1"))

    assert answer["decision"] == "accepted"
    assert (answer["buyers"], answer["payout"], answer["ref"]) == (1, 4.5, "r-1")
    assert "sold_to" not in answer  # show_buyers is off
    assert [d.lead_id for d in await gw.view.deliveries(AdvertiserId("b-one"))] == [
        answer["lead_id"]
    ]
    record = orjson.loads((await gw.view.deliveries(AdvertiserId("b-one")))[0].record)
    assert (record["buyer"], record["advertiser"], record["price"]) == ("b-one", "b-one", 20)


async def test_the_waterfall_passes_a_capped_a_closed_and_a_filtering_buyer(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())
    await gw.decide("p-mail", person(campaign="sold-excl"))  # b-one's one lead of the day

    # Friday 10:00: b-two (open on weekdays) takes the next lead.
    friday = await gw.decide("p-mail", person(campaign="sold-excl"))
    assert friday["buyers"] == 1
    assert await gw.view.deliveries(AdvertiserId("b-two"))

    # Saturday 10:00: b-one has room again, then b-two is closed and b-three takes Paris only.
    gw.clock.advance(DAY_S)
    await gw.decide("p-mail", person(campaign="sold-excl"))
    lyon = await gw.decide("p-mail", person(campaign="sold-excl", postal_code="69003"))
    paris = await gw.decide("p-mail", person(campaign="sold-excl", postal_code="75011"))

    assert (lyon["decision"], lyon["reasons"], lyon["buyers"]) == (
        "rejected",
        ["buyer.closed", "buyer.filtered"],
        0,
    )
    assert "payout" not in lyon
    assert (paris["decision"], paris["buyers"]) == ("accepted", 1)
    assert [d.lead_id for d in await gw.view.deliveries(AdvertiserId("b-three"))] == [
        paris["lead_id"]
    ]
    # Closed, filtered and disabled are known before the waterfall: counted for every lead,
    # whoever buys it; the other results only for the buyers the waterfall reached.
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-two", result="closed") == 3
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-one", result="capped") == 3
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-three", result="filtered") == 4
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-three", result="sold") == 1
    assert metric(gw, "leadgate_buyer_revenue_total", campaign="sold-excl", buyer="b-one") == 40


async def test_a_shared_sale_names_its_buyers_and_each_gets_its_delivery(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())
    ann = person(campaign="sold-shared")

    first = await gw.decide("p-mail", ann)
    second = await gw.decide("p-coreg", ann)
    third = await gw.decide("p-cash", ann)

    assert (first["buyers"], first["sold_to"]) == (2, ["b-one", "b-two"])  # by price
    assert (second["buyers"], second["sold_to"]) == (1, ["b-three"])
    assert (third["decision"], third["reasons"], third["buyers"], third["sold_to"]) == (
        "duplicate",
        ["buyer.duplicate"],
        0,
        [],
    )
    for buyer, leads in (("b-one", [first]), ("b-two", [first]), ("b-three", [second])):
        got = [d.lead_id for d in await gw.view.deliveries(AdvertiserId(buyer))]
        assert got == [lead["lead_id"] for lead in leads]


async def test_get_postbacks_and_batches_are_sold_the_same_way(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())
    query = {"campaign": "sold-shared", **person()}
    reply = await gw.request("GET", "/v1/leads", partner="p-mail", params=query)
    assert reply.status == 200
    assert reply.json()["sold_to"] == ["b-one", "b-two"]
    assert_matches_spec("GET", "/v1/leads", reply)

    bob = person(campaign="sold-excl")
    batch = await gw.batch(
        "p-mail", [bob, bob, person(campaign="sold-shared"), person(campaign="nova-ten")]
    )
    assert batch.status == 200, batch.body
    results = batch.json()["results"]
    assert [(r["decision"], r.get("buyers")) for r in results] == [
        ("accepted", 1),
        ("duplicate", 0),  # the campaign's own dedup: the batch's second Bob
        ("accepted", 2),
        ("accepted", None),  # a campaign with one advertiser: no buyers member
    ]
    assert batch.json()["counts"]["accepted"] == 3
    assert_matches_spec("POST", "/v1/leads/batch", batch)


async def test_a_buyer_whose_endpoint_is_disabled_is_passed_over(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network(), admin=True)
    assert gw.queue is not None
    await gw.queue.disable(AdvertiserId("b-one"), "HTTP 410", int(gw.clock() * 1000))
    assert await gw.app.endpoints.refresh() == {"b-one"}

    answer = await gw.decide("p-mail", person(campaign="sold-excl"))

    assert answer["buyers"] == 1
    assert await gw.view.deliveries(AdvertiserId("b-one")) == []
    assert await gw.view.deliveries(AdvertiserId("b-two"))
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-one", result="disabled") == 1
    await gw.queue.enable(AdvertiserId("b-one"))
    assert await gw.app.endpoints.refresh() == frozenset()
    again = await gw.decide("p-mail", person(campaign="sold-excl"))
    assert [d.lead_id for d in await gw.view.deliveries(AdvertiserId("b-one"))] == [
        again["lead_id"]
    ]


async def test_each_buyer_reports_on_its_own_sale(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(network_with_keys(), admin=True)
    sold = await gw.decide("p-mail", person(campaign="sold-shared"))
    assert sold["sold_to"] == ["b-one", "b-two"]

    async def feedback(buyer: str, status: str) -> dict[str, Any]:
        body = {"lead_id": sold["lead_id"], "status": status, "reason": "unreachable"}
        reply = await gw.request(
            "POST",
            "/v1/feedback",
            data=orjson.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {B_KEYS[buyer]}",
            },
        )
        assert reply.status == 200, reply.body
        answer: dict[str, Any] = reply.json()
        return answer

    # b-two returns the lead; b-one converts it: one sale each, neither touches the other.
    assert (await feedback("b-two", "returned"))["result"] == "recorded"
    assert (await feedback("b-one", "converted"))["result"] == "recorded"
    assert (await feedback("b-one", "returned"))["result"] == "recorded"
    assert (await feedback("b-two", "returned"))["result"] == "already_recorded"

    report = await gw.admin("GET", "/reports/partners?since=1d")
    assert report.status == 200, report.body
    assert_matches_spec("GET", "/v1/admin/reports/partners", report)
    buyers = {row["buyer"]: row for row in report.json()["buyers"]}
    figures = {
        b: (r["sold"], r["revenue"], r["returned"], r["converted"]) for b, r in buyers.items()
    }
    assert figures == {"b-one": (1, 20.0, 1, 1), "b-two": (1, 15.0, 1, 0)}
    (mail,) = [row for row in report.json()["partners"] if row["partner"] == "p-mail"]
    assert (mail["accepted"], mail["sales"], mail["revenue"]) == (1, 2, 35.0)
    assert (mail["returned"], mail["return_rate"]) == (2, 1.0)


async def test_caps_status_shows_each_buyers_caps(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(sold_network(), admin=True)
    await gw.decide("p-mail", person(campaign="sold-excl"))

    reply = await gw.admin("GET", "/caps?campaign=sold-excl")

    assert reply.status == 200, reply.body
    assert_matches_spec("GET", "/v1/admin/caps", reply)
    (row,) = reply.json()["caps"]
    assert (row["buyer"], row["advertiser"], row["used"], row["remaining"]) == (
        "b-one",
        "b-one",
        1,
        0,
    )
    page = await gw.metrics()  # read from the store at the scrape
    assert 'leadgate_buyer_cap_used{buyer="b-one",campaign="sold-excl"' in page
    assert metric(gw, "leadgate_buyer_cap_used", buyer="b-one", window="day") == 1
    assert metric(gw, "leadgate_buyer_cap_limit", buyer="b-one", window="day") == 1
    assert metric(gw, "leadgate_campaign_buyers", campaign="sold-excl") == 3


async def test_an_erasure_forgets_a_person_sold_to_buyers(make_gateway: GatewayFactory) -> None:
    """The campaign's own marks and the buyers' are found from the configuration and deleted,
    with the queued sales: afterwards the person is new to the campaign and to every buyer."""
    gw = await make_gateway(sold_network(), admin=True)
    ann = person(campaign="sold-shared")
    first = await gw.decide("p-mail", {**ann, "campaign": "sold-excl"})
    shared = await gw.decide("p-mail", ann)
    # b-one bought her first (through sold-excl): the shared sale passes it by.
    assert (first["buyers"], shared["sold_to"]) == (1, ["b-two", "b-three"])

    reply = await gw.admin("DELETE", "/identities", {"email": ann["email"], "phone": ann["phone"]})

    assert reply.status == 200, reply.body
    assert reply.json()["erased"]["undelivered_leads"] == 3
    for buyer in ("b-one", "b-two", "b-three"):
        assert await gw.view.deliveries(AdvertiserId(buyer)) == []
    gw.clock.advance(DAY_S)  # b-one's cap of 1 a day resets
    again = await gw.decide("p-mail", {**ann, "campaign": "sold-excl"})
    assert (again["decision"], again["buyers"]) == ("accepted", 1), again  # no duplicate.campaign
    assert [d.lead_id for d in await gw.view.deliveries(AdvertiserId("b-one"))] == [
        again["lead_id"]
    ]  # b-one had forgotten her too


async def test_an_answer_decided_before_the_buyers_is_replayed_under_its_key(
    make_gateway: GatewayFactory,
) -> None:
    """Every answer is replayable: a lead no buyer may be offered (b-three's filter) is
    recorded under its key in the campaign's slot, as its sales' answers are."""
    config = sold_network()
    only_paris = next(c for c in config["campaigns"] if c["id"] == "sold-excl")
    only_paris["buyers"] = [b for b in only_paris["buyers"] if b["advertiser"] == "b-three"]
    gw = await make_gateway(config)
    lead = person(campaign="sold-excl")  # no postal code: b-three's filter refuses it
    key = {"Idempotency-Key": "no-offer-1"}

    first = await gw.post("p-mail", lead, headers=key)
    again = await gw.post("p-mail", lead, headers=key)
    other = await gw.post("p-mail", {**lead, "postal_code": "75011"}, headers=key)

    assert first.json()["reasons"] == ["buyer.filtered"]
    assert (first.json()["buyers"], "Idempotent-Replayed" in first.headers) == (0, False)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["lead_id"] == first.json()["lead_id"]
    assert again.json()["buyers"] == 0
    assert other.status == 422  # the key reused with another body
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-three", result="filtered") == 1


async def test_a_test_lead_is_sold_on_paper_and_remembered_nowhere(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(sold_network())
    ann = person(campaign="sold-shared", test=True)

    first = await gw.decide("p-mail", ann)
    again = await gw.decide("p-mail", ann)

    assert (first["decision"], first["sold_to"], first["test"]) == (
        "accepted",
        ["b-one", "b-two"],
        True,
    )
    assert again["sold_to"] == ["b-one", "b-two"]  # no buyer remembered her
    for buyer in ("b-one", "b-two", "b-three"):
        assert await gw.view.deliveries(AdvertiserId(buyer)) == []
    assert metric(gw, "leadgate_buyer_offers_total", buyer="b-one", result="sold") == 0
