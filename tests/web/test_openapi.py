"""The OpenAPI document is the contract: served as is, valid, and true of every real answer.

Each case below makes the gateway produce one kind of answer (a decision, a batch, every
problem status it can produce, the operations routes) and checks status, content type, body
and declared headers against what the document says for that route, method and status.
OpenAPI 3.1 schemas are JSON Schema 2020-12: ``$ref``s resolve in the document itself through a
``referencing`` registry.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import IO, Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from support import RedisServer

from gateway.storage.redis import RedisStore
from gateway.web.state import DRAINING

from .conftest import DAY_S, Gateway, GatewayFactory, Reply, network, person, sold_network
from .sale_http import in_progress

SPEC_BYTES = resources.files("gateway.web").joinpath("openapi.json").read_bytes()
SPEC: dict[str, Any] = orjson.loads(SPEC_BYTES)
BASE_URI = "urn:leadgate:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    BASE_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
JSON_TYPE = "application/json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
FORM_TYPE = "application/x-www-form-urlencoded"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _lookup(pointer: str) -> Any:
    node: Any = SPEC
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _resolve(node: Any, pointer: str) -> tuple[dict[str, Any], str]:
    """Follow local ``$ref``s (response and header objects) to the object and its pointer."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        pointer = ref[1:]
        node = _lookup(pointer)
    assert isinstance(node, dict), pointer
    return node, pointer


def _describe(error: Any, depth: int = 0) -> list[str]:
    """An error and, for ``oneOf``/``anyOf``, why each branch failed."""
    where = "/".join(map(str, error.absolute_path)) or "(root)"
    lines = [f"{'  ' * depth}{where}: {error.message[:300]}"]
    for sub in error.context or ():
        lines += _describe(sub, depth + 1)
    return lines


def _schema_errors(pointer: str, instance: object) -> list[str]:
    validator = Draft202012Validator({"$ref": f"{BASE_URI}#{pointer}"}, registry=REGISTRY)
    return [line for error in validator.iter_errors(instance) for line in _describe(error)]


def _header_value(schema: dict[str, Any], raw: str) -> object:
    if schema.get("type") == "integer":
        assert raw.isdigit(), raw
        return int(raw)
    return raw


def assert_matches_spec(method: str, route: str, reply: Reply) -> None:
    """``reply`` is what the document declares for ``method route`` and its status."""
    where = f"/paths/{_escape(route)}/{method.lower()}/responses"
    responses = _lookup(where)
    declared = str(reply.status)
    assert declared in responses, (
        f"{method} {route} answered {reply.status}, which the document does not declare "
        f"(declared: {sorted(responses)}); body: {reply.body[:300]!r}"
    )
    response, pointer = _resolve(responses[declared], f"{where}/{declared}")
    content = response.get("content", {})
    assert reply.content_type in content, (
        f"{method} {route} {reply.status}: content type {reply.content_type!r} not among "
        f"{sorted(content)}"
    )
    schema_at = f"{pointer}/content/{_escape(reply.content_type)}/schema"
    body: object = reply.json() if "json" in reply.content_type else reply.body.decode()
    errors = _schema_errors(schema_at, body)
    assert not errors, f"{method} {route} {reply.status} body against {schema_at}:\n" + "\n".join(
        errors
    )
    for name, header in response.get("headers", {}).items():
        header, header_at = _resolve(header, f"{pointer}/headers/{_escape(name)}")
        raw = reply.headers.get(name)
        if raw is None:
            assert not header.get("required"), f"{method} {route} {reply.status}: no {name}"
            continue
        value = _header_value(header["schema"], raw)
        errors = _schema_errors(f"{header_at}/schema", value)
        assert not errors, f"{method} {route} {reply.status} header {name}: {errors}"


# --- the document itself -----------------------------------------------------------------


def test_the_document_is_valid_openapi() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


@pytest.mark.parametrize("name", sorted(SPEC["components"]["schemas"]))
def test_every_schema_in_the_document_is_valid_json_schema(name: str) -> None:
    Draft202012Validator.check_schema(SPEC["components"]["schemas"][name])


async def test_openapi_json_is_served_unchanged(make_embedded_gateway: GatewayFactory) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.request("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.body == SPEC_BYTES
    assert_matches_spec("GET", "/openapi.json", reply)


def _documented_examples() -> Iterator[tuple[str, object]]:
    """Every example of a response body in the document, with its schema's pointer."""
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue  # a path item's servers, parameters, summary
            for status, response in operation.get("responses", {}).items():
                where = f"/paths/{_escape(path)}/{method}/responses/{status}"
                resolved, pointer = _resolve(response, where)
                for media, content in resolved.get("content", {}).items():
                    schema_at = f"{pointer}/content/{_escape(media)}/schema"
                    if "example" in content:
                        yield schema_at, content["example"]
                    for example in content.get("examples", {}).values():
                        yield schema_at, example["value"]


@pytest.mark.parametrize(("schema_at", "example"), list(_documented_examples()))
def test_the_documents_own_examples_match_their_schemas(schema_at: str, example: object) -> None:
    assert not _schema_errors(schema_at, example)


# --- what a publisher may send -----------------------------------------------------------

#: Leads the gateway takes (api.md: integers for ref/phone/postal_code, null means absent,
#: consent as an object or flat, extra fields): the document must allow each of them too,
#: or a client generated from it would refuse to send them.
ACCEPTED_JSON_LEADS: dict[str, dict[str, object]] = {
    "full": {
        "campaign": "nova-ten",
        "ref": "click-20260412-000193",
        "email": "jeanne.martin@example.org",
        "phone": "+33612345678",
        "first_name": "Jeanne",
        "last_name": "Martin",
        "postal_code": "75011",
        "country": "FR",
        "city": "Paris",
        "birth_date": "12/04/1990",
        "company": "ACME",
        "ip": "2001:db8::1",
        "consent": {"given": True, "at": "2026-04-12T10:31:07+02:00", "version": "v3"},
        "sub1": "banner-42",
        "click_id": 981,
    },
    "integers": {
        "campaign": "nova-ten",
        "email": "int@example.org",
        "ref": 193,
        "postal_code": 6000,
    },
    "nulls": {"campaign": "nova-ten", "email": "null@example.org", "phone": None, "ref": None},
    "flat-consent": {
        "campaign": "nova-ten",
        "email": "flat@example.org",
        "consent": True,
        "consent_at": 1775982667,
        "consent_text": "J'accepte.",
    },
    "test-mode": {"campaign": "nova-ten", "email": "t@example.org", "test": True},
}


@pytest.mark.parametrize("name", list(ACCEPTED_JSON_LEADS))
async def test_leads_the_gateway_takes_are_valid_requests(
    make_embedded_gateway: GatewayFactory, name: str
) -> None:
    lead = ACCEPTED_JSON_LEADS[name]
    gw = await make_embedded_gateway()
    reply = await gw.post("p-mail", lead)
    assert reply.status == 200, reply.body
    at = "/paths/~1v1~1leads/post/requestBody/content/application~1json/schema"
    assert not _schema_errors(at, lead)
    assert not _schema_errors(
        "/paths/~1v1~1leads~1batch/post/requestBody/content/application~1json/schema",
        {"leads": [lead]},
    )


# --- every answer the gateway gives --------------------------------------------------------

Produce = Callable[[Gateway], Awaitable[Reply]]


@dataclass(frozen=True)
class Case:
    method: str
    route: str
    status: int
    produce: Produce
    #: Built on a config where p-mail may send one request per 100 s.
    rate_limited: bool = False
    #: Built on ``sold_network()`` (campaigns sold to buyers).
    sold: bool = False


CASES: dict[str, Case] = {}


def case(
    name: str,
    method: str,
    route: str,
    status: int,
    *,
    rate_limited: bool = False,
    sold: bool = False,
) -> Callable[[Produce], Produce]:
    def register(produce: Produce) -> Produce:
        CASES[name] = Case(method, route, status, produce, rate_limited, sold)
        return produce

    return register


def _rate_limited() -> dict[str, Any]:
    config = network()
    config["partners"][0]["rate_limit"] = {"per_s": 0.01, "burst": 1}  # p-mail
    return config


LEAD: dict[str, object] = {"campaign": "acme-always-on", "email": "a.b@example.com"}


async def _posts(gw: Gateway, *leads: dict[str, object]) -> Reply:
    """Post each lead as p-mail; the last answer."""
    replies = [await gw.post("p-mail", lead) for lead in leads]
    return replies[-1]


async def _get(gw: Gateway, params: Any, partner: str | None = "p-mail", **kw: Any) -> Reply:
    return await gw.request("GET", "/v1/leads", partner=partner, params=params, **kw)


async def _raw(gw: Gateway, path: str, data: bytes | str | IO[bytes], content_type: str) -> Reply:
    headers = {"Content-Type": content_type}
    return await gw.request("POST", path, partner="p-mail", data=data, headers=headers)


@case("post-accepted", "POST", "/v1/leads", 200)
async def _post_accepted(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="nova-ten"))


@case("post-duplicate", "POST", "/v1/leads", 200)
async def _post_duplicate(gw: Gateway) -> Reply:
    return await _posts(gw, LEAD, LEAD)


@case("post-capped", "POST", "/v1/leads", 200)
async def _post_capped(gw: Gateway) -> Reply:
    return await _posts(gw, *(person(campaign="nova-daily") for _ in range(3)))


@case("post-rejected", "POST", "/v1/leads", 200)
async def _post_rejected(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="acme-summer"))


@case("post-test-mode", "POST", "/v1/leads", 200)
async def _post_test_mode(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="nova-ten", test=True))


@case("post-replayed", "POST", "/v1/leads", 200)
async def _post_replayed(gw: Gateway) -> Reply:
    lead = person(campaign="acme-always-on")
    await gw.post("p-mail", lead, headers={"Idempotency-Key": "k1"})
    reply = await gw.post("p-mail", lead, headers={"Idempotency-Key": "k1"})
    assert reply.headers["Idempotent-Replayed"] == "true"
    return reply


@case("post-form", "POST", "/v1/leads", 200)
async def _post_form(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads", "campaign=nova-ten&email=f%40example.com", FORM_TYPE)


@case("get-accepted", "GET", "/v1/leads", 200)
async def _get_accepted(gw: Gateway) -> Reply:
    return await _get(gw, {"campaign": "nova-ten", "email": "g@example.com"})


@case("batch", "POST", "/v1/leads/batch", 200)
async def _batch(gw: Gateway) -> Reply:
    ann = person(campaign="nova-ten")
    leads = [
        ann,
        {"campaign": "nova-ten", "email": "nope"},
        "not a lead",
        person(campaign="acme-peak"),  # not open to p-comp: a 403 item
        ann,
        person(campaign="acme-summer"),
        person(campaign="nova-ten", test=True),
    ]
    return await gw.batch("p-comp", leads)


@case("batch-replayed", "POST", "/v1/leads/batch", 200)
async def _batch_replayed(gw: Gateway) -> Reply:
    leads = [person(campaign="nova-ten"), person(campaign="acme-summer")]
    key = {"Idempotency-Key": "batch-k1"}
    await gw.batch("p-comp", leads, headers=key)
    reply = await gw.batch("p-comp", leads, headers=key)
    assert reply.headers["Idempotent-Replayed"] == "true"
    assert [item["replayed"] for item in reply.json()["results"]] == [True, True]
    return reply


@case("post-replayed-rejected", "POST", "/v1/leads", 200)
async def _post_replayed_rejected(gw: Gateway) -> Reply:
    lead = person(campaign="acme-summer")
    await gw.post("p-mail", lead, headers={"Idempotency-Key": "k2"})
    reply = await gw.post("p-mail", lead, headers={"Idempotency-Key": "k2"})
    assert reply.headers["Idempotent-Replayed"] == "true"
    return reply


@case("post-400-json", "POST", "/v1/leads", 400)
async def _post_400_json(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads", b'{"campaign": ', JSON_TYPE)


@case("post-400-idempotency-key", "POST", "/v1/leads", 400)
async def _post_400_key(gw: Gateway) -> Reply:
    return await gw.post("p-mail", LEAD, headers={"Idempotency-Key": ""})


@case("get-400-idempotency-key", "GET", "/v1/leads", 400)
async def _get_400_key(gw: Gateway) -> Reply:
    return await _get(gw, LEAD, headers={"Idempotency-Key": "a b"})


@case("batch-400-json", "POST", "/v1/leads/batch", 400)
async def _batch_400_json(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads/batch", b'{"leads": [', JSON_TYPE)


@case("post-401", "POST", "/v1/leads", 401)
async def _post_401(gw: Gateway) -> Reply:
    return await gw.post(None, LEAD)


@case("get-401", "GET", "/v1/leads", 401)
async def _get_401(gw: Gateway) -> Reply:
    return await _get(gw, {**LEAD, "api_key": "nope"}, partner=None)


@case("batch-401", "POST", "/v1/leads/batch", 401)
async def _batch_401(gw: Gateway) -> Reply:
    return await gw.post(None, {"leads": [LEAD]}, path="/v1/leads/batch")


@case("post-403", "POST", "/v1/leads", 403)
async def _post_403(gw: Gateway) -> Reply:
    return await gw.post("p-comp", {**LEAD, "campaign": "acme-peak"})


@case("get-403", "GET", "/v1/leads", 403)
async def _get_403(gw: Gateway) -> Reply:
    return await _get(gw, {**LEAD, "campaign": "nope"}, partner="p-comp")


@case("post-413", "POST", "/v1/leads", 413)
async def _post_413(gw: Gateway) -> Reply:
    return await gw.post("p-mail", {**LEAD, "note": "y" * 70_000})


@case("post-413-form-fields", "POST", "/v1/leads", 413)
async def _post_413_fields(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads", "&".join(f"f{i}=1" for i in range(201)), FORM_TYPE)


@case("batch-413", "POST", "/v1/leads/batch", 413)
async def _batch_413(gw: Gateway) -> Reply:
    body = io.BytesIO(orjson.dumps({"leads": [{**LEAD, "note": "y" * 500}] * 9000}))
    return await _raw(gw, "/v1/leads/batch", body, JSON_TYPE)


@case("get-413-query-parameters", "GET", "/v1/leads", 413)
async def _get_413(gw: Gateway) -> Reply:
    return await _get(gw, {f"f{i}": "1" for i in range(201)})


@case("post-415", "POST", "/v1/leads", 415)
async def _post_415(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads", b"campaign=nova-ten", "text/plain")


@case("batch-415", "POST", "/v1/leads/batch", 415)
async def _batch_415(gw: Gateway) -> Reply:
    return await _raw(gw, "/v1/leads/batch", b"leads=1", FORM_TYPE)


@case("post-422-invalid-lead", "POST", "/v1/leads", 422)
async def _post_422(gw: Gateway) -> Reply:
    return await gw.post("p-mail", {"campaign": "nova-ten", "email": "x", "consent": {"at": 1}})


@case("post-422-json-array", "POST", "/v1/leads", 422)
async def _post_422_array(gw: Gateway) -> Reply:
    return await gw.post("p-mail", [LEAD])


@case("post-422-idempotency-conflict", "POST", "/v1/leads", 422)
async def _post_422_conflict(gw: Gateway) -> Reply:
    await gw.post("p-mail", person(campaign="nova-ten"), headers={"Idempotency-Key": "k"})
    return await gw.post("p-mail", person(campaign="nova-ten"), headers={"Idempotency-Key": "k"})


@case("get-422-repeated-field", "GET", "/v1/leads", 422)
async def _get_422(gw: Gateway) -> Reply:
    return await _get(gw, [("campaign", "nova-ten"), ("campaign", "nova-daily")])


@case("batch-422-envelope", "POST", "/v1/leads/batch", 422)
async def _batch_422(gw: Gateway) -> Reply:
    return await gw.batch("p-mail", [])


@case("post-429", "POST", "/v1/leads", 429, rate_limited=True)
async def _post_429(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="nova-ten"), person(campaign="nova-ten"))


@case("get-429", "GET", "/v1/leads", 429, rate_limited=True)
async def _get_429(gw: Gateway) -> Reply:
    await _get(gw, person(campaign="nova-ten"))
    return await _get(gw, person(campaign="nova-ten"))


@case("batch-429", "POST", "/v1/leads/batch", 429, rate_limited=True)
async def _batch_429(gw: Gateway) -> Reply:
    await gw.batch("p-mail", [person(campaign="nova-ten")])
    return await gw.batch("p-mail", [person(campaign="nova-ten")])


@case("post-sold", "POST", "/v1/leads", 200, sold=True)
async def _post_sold(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="sold-excl"))


@case("post-sold-shared", "POST", "/v1/leads", 200, sold=True)
async def _post_sold_shared(gw: Gateway) -> Reply:
    return await _posts(gw, person(campaign="sold-shared"))


@case("post-unsold-duplicate", "POST", "/v1/leads", 200, sold=True)
async def _post_unsold_duplicate(gw: Gateway) -> Reply:
    ann = person(campaign="sold-shared")
    return await _posts(gw, ann, ann, ann)  # two buyers, then the third: nobody left


@case("post-unsold-rejected", "POST", "/v1/leads", 200, sold=True)
async def _post_unsold_rejected(gw: Gateway) -> Reply:
    gw.clock.advance(DAY_S)  # Saturday: b-two is closed
    # b-one took its one lead of the day; b-three takes Paris only.
    return await _posts(gw, person(campaign="sold-excl"), person(campaign="sold-excl"))


@case("get-sold", "GET", "/v1/leads", 200, sold=True)
async def _get_sold(gw: Gateway) -> Reply:
    return await _get(gw, person(campaign="sold-excl"))


@case("batch-sold", "POST", "/v1/leads/batch", 200, sold=True)
async def _batch_sold(gw: Gateway) -> Reply:
    ann = person(campaign="sold-excl")
    leads = [ann, ann, person(campaign="sold-shared"), person(campaign="nova-ten")]
    return await gw.batch("p-mail", leads)


@case("post-409-in-progress", "POST", "/v1/leads", 409, sold=True)
async def _post_409(gw: Gateway) -> Reply:
    return await in_progress(gw)


@case("healthz", "GET", "/healthz", 200)
async def _healthz(gw: Gateway) -> Reply:
    return await gw.request("GET", "/healthz")


@case("readyz", "GET", "/readyz", 200)
async def _readyz(gw: Gateway) -> Reply:
    return await gw.request("GET", "/readyz")


@case("metrics", "GET", "/metrics", 200)
async def _metrics(gw: Gateway) -> Reply:
    return await gw.ops_request("GET", "/metrics")


@pytest.mark.parametrize("name", list(CASES))
async def test_every_answer_matches_the_document(
    make_embedded_gateway: GatewayFactory, name: str
) -> None:
    case = CASES[name]
    config = _rate_limited() if case.rate_limited else sold_network() if case.sold else None
    gw = await make_embedded_gateway(config)
    reply = await case.produce(gw)
    assert reply.status == case.status, reply.body
    assert_matches_spec(case.method, case.route, reply)


async def test_the_decisions_of_the_cases_are_the_ones_named(
    make_embedded_gateway: GatewayFactory,
) -> None:
    """Guard for the table above: each 200 case really produced the decision it is named for."""
    for name, decision in [
        ("post-accepted", "accepted"),
        ("post-duplicate", "duplicate"),
        ("post-capped", "capped"),
        ("post-rejected", "rejected"),
        ("post-sold", "accepted"),
        ("post-sold-shared", "accepted"),
        ("post-unsold-duplicate", "duplicate"),
        ("post-unsold-rejected", "rejected"),
    ]:
        gw = await make_embedded_gateway(sold_network() if CASES[name].sold else None)
        reply = await CASES[name].produce(gw)
        assert reply.json()["decision"] == decision, name


async def test_answers_while_the_store_is_down_match_the_document(
    make_embedded_gateway: GatewayFactory, spare_redis: Callable[[], RedisServer]
) -> None:
    server = spare_redis()
    server.start()
    gw = await make_embedded_gateway(store=RedisStore(server.url, socket_timeout_s=2.0))
    assert (await gw.post("p-mail", person(campaign="nova-ten"))).status == 200
    server.kill()

    down = await gw.post("p-mail", person(campaign="nova-ten"))
    assert down.status == 503
    assert int(down.headers["Retry-After"]) >= 1
    assert_matches_spec("POST", "/v1/leads", down)
    batch = await gw.batch("p-mail", [person(campaign="nova-ten")])
    assert_matches_spec("POST", "/v1/leads/batch", batch)
    ready = await gw.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "unavailable", "store": "redis"})
    assert_matches_spec("GET", "/readyz", ready)
    # Liveness does not depend on the store: restarting the process would not help.
    assert (await gw.request("GET", "/healthz")).status == 200


async def test_draining_readyz_matches_the_document(make_embedded_gateway: GatewayFactory) -> None:
    gw = await make_embedded_gateway()
    gw.client.app[DRAINING].set()
    reply = await gw.request("GET", "/readyz")
    assert (reply.status, reply.json()) == (503, {"status": "draining", "store": "embedded"})
    assert_matches_spec("GET", "/readyz", reply)


@pytest.mark.parametrize(
    ("method", "path", "component"),
    [("GET", "/v1/nope", "NotFound"), ("PUT", "/v1/leads", "MethodNotAllowed")],
)
async def test_routing_problems_match_their_components(
    make_embedded_gateway: GatewayFactory, method: str, path: str, component: str
) -> None:
    gw = await make_embedded_gateway()
    reply = await gw.request(method, path)
    pointer = f"/components/responses/{component}/content/application~1problem+json/schema"
    assert reply.content_type == "application/problem+json"
    assert not _schema_errors(pointer, reply.json())


async def test_a_problem_type_always_has_the_same_title(
    make_embedded_gateway: GatewayFactory,
) -> None:
    """RFC 9457: ``title`` does not change from occurrence to occurrence of one ``type``
    (clients may show it; the document says "same for every occurrence")."""
    titles: dict[str, set[str]] = {}
    for case in CASES.values():
        if case.status < 400:
            continue
        gw = await make_embedded_gateway(_rate_limited() if case.rate_limited else None)
        problem = (await case.produce(gw)).json()
        titles.setdefault(problem["type"], set()).add(problem["title"])
    assert {t: sorted(s) for t, s in titles.items() if len(s) > 1} == {}
