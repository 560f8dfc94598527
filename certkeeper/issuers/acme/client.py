"""The protocol seam: a ``ClientNetwork`` that retries like a careful client, and order operations.

``acme``'s :class:`~acme.client.ClientNetwork` signs requests and parses problem documents; we add
what it leaves out (Pebble's README, https://github.com/letsencrypt/pebble; RFC 8555 §6.5 and
§7.5.1; the Let's Encrypt integration guide, https://letsencrypt.org/docs/integration-guide/):

* badNonce is retried with the fresh nonce from the error response, several times (``acme``
  retries once, and then with a nonce from a separate HEAD);
* 429 and 5xx are retried after ``Retry-After`` (delta-seconds or HTTP-date, read by
  :mod:`certkeeper.retry_after` against the response's ``Date``), within the deadline;
* polling starts at tens of milliseconds and backs off, always honouring ``Retry-After`` (also the
  one on the finalize response), which can lengthen a wait but never shorten it;
* a CA clock more than five minutes from ours is reported once (:class:`ServerClock`);
* ``replaces`` (RFC 9773 §5) on new orders, by extending ``NewOrder``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import jws as acme_jws
from acme import messages
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.json_util import field
from josepy.jwa import JWASignature
from josepy.jwk import JWK
from requests.utils import parse_header_links

from certkeeper.clock import Clock
from certkeeper.errors import IssuanceError
from certkeeper.retry_after import SKEW_WARNING, clock_skew, parse_retry_after

from .problems import PROTOCOL_ERRORS, problem_code, translate

log = logging.getLogger(__name__)

USER_AGENT = "certkeeper (acme-python)"

T = TypeVar("T", bound=JSONDeSerializable)


class NewOrder(messages.NewOrder):
    """``newOrder`` payload with the ARI ``replaces`` field (RFC 9773 §5)."""

    replaces: str | None = field("replaces", omitempty=True)


class Order(messages.Order):
    """Order body that also reads ``replaces`` back."""

    replaces: str | None = field("replaces", omitempty=True)


class ServerClock:
    """Compares the ACME server's ``Date`` header with our clock, and warns once per server when
    they are more than five minutes apart: a wrong clock here makes new certificates look "not yet
    valid", renewals come at the wrong time, and HTTP-date Retry-After values look wrong."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._warned = False
        self._lock = threading.Lock()

    def observe(self, date: str | None, now: datetime) -> None:
        if self._warned:
            return
        skew = clock_skew(date, now)
        if skew is None or abs(skew) <= SKEW_WARNING:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
        server = (now + skew).astimezone(UTC)
        log.warning(
            "the clock of the ACME server %s and ours differ by %d minutes: it says %s, this machine "
            "says %s; check this machine's time (NTP)", self.url, round(abs(skew).total_seconds() / 60),
            f"{server:%Y-%m-%d %H:%M:%S} UTC", f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")


class Deadline:
    """The overall time budget of one issuance (monotonic), with sleeps that respect it."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.clock = clock
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def sleep(self, seconds: float, what: str) -> None:
        """Sleep ``seconds``, or raise a retryable error if that passes the deadline."""
        if seconds > self.remaining():
            retry_at = self.clock.now() + timedelta(seconds=seconds)
            raise IssuanceError(f"{what}: deadline reached (the CA asks to wait {seconds:.0f} s more)",
                                retry_after=retry_at)
        if seconds > 0:
            time.sleep(seconds)


def shared_http(connections: int = 32) -> requests.Session:
    """One HTTP session for every :class:`Network` of an issuer: its connection pool keeps TLS
    connections to the CA open between requests of different issuances (an ARI check right after
    an order, twenty orders of one daemon pass), instead of a handshake and a CA bundle parse per
    issuance. urllib3's pool is thread-safe; ACME sets no cookies."""
    from requests.adapters import HTTPAdapter

    http = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


class Network(acme_client.ClientNetwork):
    """``ClientNetwork`` with persistent badNonce retries and 429/5xx back-off.

    One instance per issuance (it keeps a nonce pool and the last response; not thread-safe);
    ``http`` is a session shared with other instances (:func:`shared_http`), else its own.
    """

    def __init__(
        self,
        key: JWK,
        *,
        alg: JWASignature,
        verify: bool | str,
        timeout: float,
        deadline: Deadline,
        account_url: str | None = None,
        bad_nonce_retries: int = 12,
        busy_retries: int = 4,
        server_clock: ServerClock | None = None,
        http: requests.Session | None = None,
        nonces: set[str] | None = None,
    ) -> None:
        # requests merges REQUESTS_CA_BUNDLE only when verify is True: a path given here wins.
        super().__init__(key=key, alg=alg, verify_ssl=cast(bool, verify), user_agent=USER_AGENT,
                         timeout=cast(int, timeout))
        self._shared_http = http is not None
        if http is not None:
            self.session.close()  # the one ClientNetwork made: no connection was opened on it
            self.session = http
        if nonces is not None:
            # shared by the Networks of one issuer: every response brings a nonce back to the pool,
            # so an issuance seldom starts with a HEAD to newNonce (a stale one is a badNonce, retried)
            self._nonces = nonces
        self.deadline = deadline
        self.bad_nonce_retries = bad_nonce_retries
        self.busy_retries = busy_retries
        self.last_response: requests.Response | None = None
        self.server_clock = server_clock
        self.set_account_url(account_url)

    def __del__(self) -> None:
        if not getattr(self, "_shared_http", False):  # a shared session outlives this issuance
            super().__del__()

    def set_account_url(self, url: str | None) -> None:
        self.account = (messages.RegistrationResource(uri=url, body=messages.Registration())
                        if url else None)

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        if self.server_clock is not None:
            self.server_clock.observe(response.headers.get("Date"), self.deadline.clock.now())
        # RFC 8555 §6.5: an error response carries a fresh nonce too; keep it for the retry.
        nonce = response.headers.get(self.REPLAY_NONCE_HEADER)
        if nonce:
            try:
                self._nonces.add(acme_jws.Header._fields["nonce"].decode(nonce))
            except DeserializationError:
                pass
        return response

    def _get_nonce(self, url: str, new_nonce_url: str) -> str:
        # acme checks then pops; with a shared pool another thread may take the last nonce in between
        while True:
            try:
                return self._nonces.pop()
            except KeyError:
                pass
            log.debug("requesting a fresh nonce")
            if new_nonce_url is None:
                response = self.head(url)
            else:
                response = self._check_response(self.head(new_nonce_url), content_type=None)
            self._add_nonce(response)

    def retry_after(self, response: requests.Response) -> float | None:
        """The response's Retry-After in seconds (an HTTP-date is measured against its Date)."""
        return parse_retry_after(response.headers.get("Retry-After"), date=response.headers.get("Date"),
                                 now=self.deadline.clock.now())

    def _busy_delay(self, attempt: int) -> float | None:
        """Seconds to wait before retrying a 429/5xx, or None if it should not be retried: the
        CA's Retry-After, but never less than our own back-off (0.5 s doubling to 8 s)."""
        response = self.last_response
        if response is None or attempt >= self.busy_retries:
            return None
        if response.status_code != 429 and response.status_code < 500:
            return None
        backoff: float = min(0.5 * 2.0**attempt, 8.0)
        return max(self.retry_after(response) or 0.0, backoff)

    def _give_up(self, error: Exception) -> Exception:
        response = self.last_response
        if response is not None and isinstance(error, messages.Error):
            delay = self.retry_after(response)
            if delay is not None:
                error.retry_after_at = self.deadline.clock.now() + timedelta(seconds=delay)
        return error

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        bad_nonces = 0
        busy = 0
        dropped = 0
        while True:
            try:
                return self._post_once(*args, **kwargs)
            except requests.exceptions.ConnectionError as error:
                # A keep-alive connection the server closed while idle fails on reuse before
                # the request is read ("Remote end closed connection"); a fresh one works.
                # Repeating is safe for almost every ACME POST (POST-as-GET, answering a
                # challenge, finalizing); a repeated newOrder at worst leaves an unused order.
                if dropped >= 2 or not _is_dropped_connection(error):
                    raise
                dropped += 1
                log.debug("connection dropped by the server, retrying: %s", error)
            except (messages.Error, acme_errors.ClientError) as error:
                bad_nonce = isinstance(error, messages.Error) and problem_code(error) == "badNonce"
                if bad_nonce and bad_nonces < self.bad_nonce_retries:
                    bad_nonces += 1
                    log.debug("badNonce, retrying with the fresh nonce (%d)", bad_nonces)
                    continue
                delay = self._busy_delay(busy)
                if delay is None or delay > self.deadline.remaining():
                    raise self._give_up(error) from None
                busy += 1
                status = self.last_response.status_code if self.last_response is not None else 0
                log.info("ACME server busy (HTTP %d), retrying in %.1f s", status, delay)
                self.deadline.sleep(delay, "ACME request")

    def get(self, url: str, content_type: str = acme_client.ClientNetwork.JSON_CONTENT_TYPE,
            **kwargs: Any) -> requests.Response:
        busy = 0
        while True:
            try:
                return super().get(url, content_type=content_type, **kwargs)
            except (messages.Error, acme_errors.ClientError) as error:
                delay = self._busy_delay(busy)
                if delay is None or delay > self.deadline.remaining():
                    raise self._give_up(error) from None
                busy += 1
                self.deadline.sleep(delay, "ACME request")


def _is_dropped_connection(error: requests.exceptions.ConnectionError) -> bool:
    text = str(error)
    return "RemoteDisconnected" in text or "Connection reset" in text or "Connection aborted" in text


def links(response: requests.Response, relation: str) -> list[str]:
    """Every Link URL of ``relation`` (several ``alternate`` links may come)."""
    header = response.headers.get("Link")
    if not header:
        return []
    return [link["url"] for link in parse_header_links(header)
            if link.get("rel") == relation and "url" in link]


class Directory:
    """The directory of one ACME server, fetched once and shared by all sessions, with the
    :class:`ServerClock` that watches that server's ``Date``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.server_clock = ServerClock(url)
        self._lock = threading.Lock()
        self._directory: messages.Directory | None = None

    def get(self, net: Network) -> messages.Directory:
        with self._lock:
            if self._directory is None:
                try:
                    response = net.get(self.url)
                    self._directory = messages.Directory.from_json(response.json())
                except PROTOCOL_ERRORS as exc:
                    raise translate(exc, what="ACME directory") from exc
            return self._directory


class Session:
    """ACME operations for one issuance, over one :class:`Network`."""

    def __init__(self, directory: messages.Directory, net: Network, deadline: Deadline) -> None:
        self.directory = directory
        self.net = net
        self.deadline = deadline

    def url(self, resource: str) -> str | None:
        try:
            return cast(str, self.directory[resource])
        except KeyError:
            return None

    def post(self, url: str, obj: JSONDeSerializable | None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("new_nonce_url", self.url("newNonce"))
        return self.net.post(url, obj, **kwargs)

    def post_as_get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.post(url, None, **kwargs)

    def fetch(self, url: str, decoder: Callable[[Any], T]) -> tuple[T, requests.Response]:
        response = self.post_as_get(url)
        return decoder(response.json()), response

    def poll(self, url: str, decoder: Callable[[Any], T], status_of: Callable[[T], str],
             pending: Sequence[str], what: str, *, after: requests.Response | None = None) -> T:
        """POST-as-GET ``url`` until its status leaves ``pending``: first after ~25 ms, then
        backing off to 2 s, or longer when Retry-After says so (never shorter), within the deadline.

        ``after`` is the response that left the resource pending (the finalize answer, RFC 8555
        §7.4): its Retry-After is waited for before the first poll.
        """
        delay = 0.025
        if after is not None:
            first = self.net.retry_after(after)
            if first:
                self.deadline.sleep(first, what)
        while True:
            body, response = self.fetch(url, decoder)
            if status_of(body) not in pending:
                return body
            self.deadline.sleep(max(self.net.retry_after(response) or 0.0, delay), what)
            delay = min(delay * 1.6, 2.0)

    def new_order(self, identifiers: Sequence[str], *, profile: str | None,
                  replaces: str | None) -> tuple[str, Order]:
        payload = NewOrder(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
                         for name in identifiers],
            profile=profile, replaces=replaces)
        response = self.post(cast(str, self.directory["newOrder"]), payload)
        location = response.headers.get("Location")
        if not location:
            raise IssuanceError("the ACME server created an order without a Location")
        return location, cast(Order, Order.from_json(response.json()))

    def finalize(self, order: Order, csr_der: bytes) -> tuple[Order, requests.Response]:
        """Send the CSR; the order (often ``processing``) and the response, whose Retry-After
        says when to poll first."""
        from cryptography import x509

        request = messages.CertificateRequest(csr=x509.load_der_x509_csr(csr_der))
        response = self.post(order.finalize, request)
        return cast(Order, Order.from_json(response.json())), response

    def download(self, url: str) -> tuple[str, list[str]]:
        """The PEM chain at ``url`` and the URLs of its alternates."""
        response = self.post_as_get(url)
        return response.text, links(response, "alternate")
