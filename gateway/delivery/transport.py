"""One HTTP request per delivery attempt, to the advertiser's CRM, classified into an
``AttemptResult`` (``gateway/delivery/model.py``). This is the seam the queue calls::

    transport = Transport(config, os.environ, events)   # ConfigError: a secret is missing
    client = transport.client(advertiser)                # None: no endpoint configured
    result = await client.send(delivery)                 # never raises for HTTP/network trouble
    await transport.close()

``EndpointClient.send``:

1. answers HELD (no request, ``retry_after_s`` set) while the breaker is open, or when no
   rate-limit token / concurrency slot came within ``delivery.max_queue_wait``;
2. otherwise renders the lead (``adapters``), adds ``webhook-id`` and ``Idempotency-Key`` (the
   lead id: the same on every attempt and replay), a fresh ``webhook-timestamp`` and
   ``webhook-signature`` (Standard Webhooks, when a secret is configured), the static headers
   and the auth header, and makes ONE request: no redirects followed, no proxy from the
   environment, private addresses refused (``netguard``), at most ``max_response_bytes`` read;
3. classifies: 2xx delivered (unless ``refuse_when`` matches the body: rejected); 400/422
   rejected; 410 gone (the queue disables the endpoint for every worker; this client keeps no
   such state); 408/429/5xx, other 4xx,
   3xx, timeouts and connection errors retry, with ``Retry-After`` when the CRM sent one.

Only ``asyncio.CancelledError`` (and programming errors) leave ``send``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import errno
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp
import orjson
from yarl import URL

from gateway import __version__
from gateway.config.delivery import (
    AuthKind,
    DeliverySettings,
    Endpoint,
    Refusal,
    resolve_secret,
    webhook_keys,
)
from gateway.config.model import Config
from gateway.delivery.adapters import Adapter
from gateway.delivery.model import AttemptResult, Delivery, DeliveryEvents, Outcome
from gateway.delivery.netguard import Guard, GuardedResolver
from gateway.delivery.protect import Breaker, BreakerState, TokenBucket
from gateway.delivery.signing import Signer
from gateway.errors import ConfigError, ConfigIssue, DestinationRefused
from gateway.types import AdvertiserId

log = logging.getLogger(__name__)

#: Characters of a response body kept in ``AttemptResult.response_excerpt``.
EXCERPT_CHARS: Final = 500
USER_AGENT: Final = f"leadgate/{__version__}"

Clock = Callable[[], float]


class EndpointClient:
    """Sends deliveries to one advertiser's endpoint, under its rate, concurrency and breaker."""

    def __init__(
        self,
        advertiser: AdvertiserId,
        endpoint: Endpoint,
        settings: DeliverySettings,
        session: aiohttp.ClientSession,
        *,
        signing_keys: tuple[bytes, ...] = (),
        auth_header: tuple[str, str] | None = None,
        events: DeliveryEvents | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.advertiser = advertiser
        self.endpoint = endpoint
        self.settings = settings
        self.timeout_s = settings.timeout_for(endpoint)
        self._session = session
        self._adapter = Adapter(endpoint)
        self._signer = Signer(signing_keys)
        self._auth_header = auth_header
        self._events = events
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots = asyncio.Semaphore(endpoint.concurrency)
        self._bucket = (
            None if endpoint.rate_limit is None else TokenBucket(endpoint.rate_limit, clock())
        )
        self.breaker = Breaker(endpoint.breaker)
        self._reported = BreakerState.CLOSED
        # Everything a request needs that does not change between requests, built once.
        self._url = URL(endpoint.url)
        self._timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self._static_headers = {**endpoint.headers, "User-Agent": USER_AGENT}

    async def send(self, delivery: Delivery) -> AttemptResult:
        """One attempt; see the module docstring. Never raises for network or HTTP trouble."""
        if not self.breaker.allow(self._clock()):
            self._report_state()
            return self._held("circuit breaker open", self.breaker.retry_in_s(self._clock()))
        self._report_state()  # allow() may have moved open -> half_open
        settled = False  # False: a half-open probe slot taken by allow() must be given back
        try:
            deadline = self._clock() + self.settings.max_queue_wait_s
            if self._bucket is not None:
                wait = self._bucket.reserve(self._clock(), self.settings.max_queue_wait_s)
                if wait is None:
                    return self._held("rate limited", self._bucket.wait_s(self._clock()))
                if wait > 0:
                    await asyncio.sleep(wait)
            if self._slots.locked():  # wait_for(..., 0) would not even try a free slot
                try:
                    await asyncio.wait_for(
                        self._slots.acquire(), max(0.0, deadline - self._clock())
                    )
                except TimeoutError:
                    return self._held("concurrency limit reached", 1.0)
            else:
                await self._slots.acquire()
            try:
                result = await self._attempt(delivery)
            finally:
                self._slots.release()
            settled = True
            self._settle(result)
            return result
        finally:
            if not settled:
                self.breaker.release()

    # --- one request ----------------------------------------------------------------------

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        started = self._clock()
        try:
            rendered = self._adapter.render(delivery.record)
        except ValueError:
            # A record that is not JSON cannot become a request on any retry.
            return AttemptResult(Outcome.REJECTED, None, "record is not a JSON object")
        headers = self._static_headers.copy()
        headers["Content-Type"] = rendered.content_type
        headers["Idempotency-Key"] = delivery.lead_id
        if self._signer:
            headers.update(
                self._signer.headers(delivery.lead_id, int(self._wall_clock()), rendered.body)
            )
        else:
            headers["webhook-id"] = delivery.lead_id
        if self._auth_header is not None:
            headers[self._auth_header[0]] = self._auth_header[1]
        try:
            async with self._session.post(
                self._url,
                data=rendered.body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                body = await _read_capped(response, self.settings.max_response_bytes)
                if not response.content.at_eof():
                    response.close()  # do not drain the rest into a pooled connection
                return classify(
                    response.status,
                    body,
                    response.headers.get("Retry-After"),
                    self.endpoint.refuse_when,
                    self._wall_clock(),
                    self._clock() - started,
                )
        except TimeoutError:
            detail = f"timeout after {self.timeout_s:g}s"
        except aiohttp.ClientError as exc:
            detail = describe_error(exc)
        except OSError as exc:  # a connect-time refusal not wrapped by aiohttp
            detail = describe_os_error(exc)
        return AttemptResult(Outcome.RETRY, None, detail, None, self._clock() - started)

    # --- bookkeeping ----------------------------------------------------------------------

    def _settle(self, result: AttemptResult) -> None:
        self.breaker.record(result.outcome is Outcome.RETRY, self._clock())
        self._report_state()
        if self._events is not None:
            self._events.attempted(self.advertiser, result.outcome, result.duration_s)

    def _held(self, detail: str, retry_after_s: float) -> AttemptResult:
        result = AttemptResult(Outcome.HELD, None, detail, retry_after_s=max(retry_after_s, 0.0))
        if self._events is not None:
            self._events.attempted(self.advertiser, Outcome.HELD, 0.0)
        return result

    def _report_state(self) -> None:
        state = self.breaker.state
        if state != self._reported:
            self._reported = state
            log.info(
                "delivery endpoint state",
                extra={"fields": {"advertiser": self.advertiser, "state": state.value}},
            )
            if self._events is not None:
                self._events.breaker_state(self.advertiser, state.value)


class Transport:
    """Every configured endpoint of ``config``, sharing one ``aiohttp.ClientSession`` whose
    connector refuses private destinations unless ``delivery.allow_networks`` lists them.

    Resolves every secret from ``environ`` when built: a missing variable or file, or a
    signing secret that is not ``whsec_<base64>``, is a ``ConfigError`` listing them all.
    Build it inside the running event loop (the connector binds to it); ``close()`` it.
    """

    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str],
        events: DeliveryEvents | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        """``clock`` (monotonic seconds) drives rates, the breaker and durations;
        ``wall_clock`` (epoch seconds) the ``webhook-timestamp``. Tests inject both."""
        settings = config.delivery
        issues: list[ConfigIssue] = []
        secrets: dict[AdvertiserId, tuple[tuple[bytes, ...], tuple[str, str] | None]] = {}
        for advertiser in config.advertisers.values():
            if advertiser.endpoint is None:
                continue
            try:
                secrets[advertiser.id] = _secrets(advertiser.endpoint, environ)
            except ConfigError as exc:
                issues.extend(exc.issues)
        if issues:
            raise ConfigError(issues)
        self.guard = Guard(settings.allow_networks)
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.guard),
            socket_factory=self.guard.socket_factory,
            limit=0,  # the per-endpoint semaphores bound concurrency
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no HTTP(S)_PROXY detour around the address policy
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        self._clients = {
            advertiser.id: EndpointClient(
                advertiser.id,
                advertiser.endpoint,
                settings,
                self._session,
                signing_keys=secrets[advertiser.id][0],
                auth_header=secrets[advertiser.id][1],
                events=events,
                clock=clock,
                wall_clock=wall_clock,
            )
            for advertiser in config.advertisers.values()
            if advertiser.endpoint is not None
        }

    def client(self, advertiser: AdvertiserId) -> EndpointClient | None:
        return self._clients.get(advertiser)

    @property
    def clients(self) -> Mapping[AdvertiserId, EndpointClient]:
        return self._clients

    async def close(self) -> None:
        await self._session.close()


def _secrets(
    endpoint: Endpoint, environ: Mapping[str, str]
) -> tuple[tuple[bytes, ...], tuple[str, str] | None]:
    issues: list[ConfigIssue] = []
    keys: tuple[bytes, ...] = ()
    header: tuple[str, str] | None = None
    if endpoint.signing is not None:
        try:
            keys = webhook_keys(endpoint.signing, environ)
        except ConfigError as exc:
            issues.extend(exc.issues)
    if endpoint.auth is not None:
        auth = endpoint.auth
        try:
            secret = resolve_secret(auth.secret, environ)
        except ConfigError as exc:
            issues.extend(exc.issues)
        else:
            if auth.kind is AuthKind.BEARER:
                header = ("Authorization", f"Bearer {secret}")
            elif auth.kind is AuthKind.BASIC:
                token = base64.b64encode(f"{auth.username}:{secret}".encode()).decode("ascii")
                header = ("Authorization", f"Basic {token}")
            else:
                header = (auth.header, secret)
            if "\n" in secret or "\r" in secret:
                issues.append(ConfigIssue(auth.secret.source, "a header secret cannot span lines"))
    if issues:
        raise ConfigError(issues)
    return keys, header


# --- pure parts ----------------------------------------------------------------------------


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    content = response.content
    chunks: list[bytes] = []
    size = 0
    # A short answer is usually whole after one read: at_eof() spares the read returning b"".
    while size < limit and not content.at_eof():
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def classify(
    status: int,
    body: bytes,
    retry_after: str | None,
    refusal: Refusal | None,
    now_s: float,
    duration_s: float = 0.0,
) -> AttemptResult:
    """The outcome of one HTTP answer (pure). ``now_s``: epoch seconds, for HTTP-date
    ``Retry-After`` values; ``duration_s`` is passed through to the result."""
    excerpt = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
    wait = parse_retry_after(retry_after, now_s)
    if 200 <= status < 300:
        if refusal is not None and refused(refusal, body):
            return AttemptResult(
                Outcome.REJECTED,
                status,
                f"HTTP {status}, body matched refusal",
                None,
                duration_s,
                excerpt,
            )
        return AttemptResult(Outcome.DELIVERED, status, f"HTTP {status}", None, duration_s, excerpt)
    if status in (400, 422):
        return AttemptResult(Outcome.REJECTED, status, f"HTTP {status}", None, duration_s, excerpt)
    if status == 410:
        return AttemptResult(
            Outcome.GONE, status, "HTTP 410: endpoint gone", None, duration_s, excerpt
        )
    if 300 <= status < 400:
        detail = f"HTTP {status}: redirect not followed"
        return AttemptResult(Outcome.RETRY, status, detail, wait, duration_s, excerpt)
    # 408, 429, 5xx; and other 4xx (401, 403, 404, ...): a configuration ops can fix, so the
    # lead waits for it rather than being dropped.
    return AttemptResult(Outcome.RETRY, status, f"HTTP {status}", wait, duration_s, excerpt)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None
    when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(text)
        return max(0.0, when.timestamp() - now_s)
    return None


def refused(refusal: Refusal, body: bytes) -> bool:
    """Whether a 2xx ``body`` says the CRM refused the lead."""
    if refusal.regex is not None:
        return refusal.regex.search(body.decode("utf-8", "replace")) is not None
    if refusal.json_path is None:
        return False
    try:
        value: object = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    for step in refusal.json_path:
        if isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
            continue
        if not (isinstance(step, str) and isinstance(value, dict) and step in value):
            return False
        value = value[step]
    return any(_same(value, wanted) for wanted in refusal.values)


def _same(found: object, wanted: object) -> bool:
    # YAML `equals: 1` must not match JSON `true` (a bool is an int in Python); 1 matches 1.0.
    if isinstance(found, bool) or isinstance(wanted, bool):
        return type(found) is type(wanted) and found == wanted
    return found == wanted


def describe_error(exc: aiohttp.ClientError) -> str:
    """A short, PII-free account of a client error (never the URL's query, never a body)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if _refused_destination(exc.os_error):
            return "destination not allowed (private or reserved address)"
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_os_error(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed without an answer"
    if isinstance(exc, aiohttp.ClientOSError):
        return describe_os_error(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body broken off"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid HTTP response"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    return f"client error ({type(exc).__name__})"


def describe_os_error(exc: OSError) -> str:
    if _refused_destination(exc):
        return "destination not allowed (private or reserved address)"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return f"connection failed ({exc.strerror or type(exc).__name__})"


def _refused_destination(exc: BaseException) -> bool:
    return isinstance(exc, DestinationRefused) or "destination not allowed" in str(exc)
