"""What the HTTP notifiers (Slack, generic webhook, Teams) share: the URL policy and one POST.

A webhook URL is a bearer secret and a server-side request forgery (SSRF) vector at once
(OWASP SSRF Prevention Cheat Sheet,
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html), so every
request made here:

- takes its URL from a secret reference (``env:``, ``file:``, ``secret:``), resolved at send time;
  a literal URL in the config still works but is logged as a warning (which names no URL);
- is ``https`` unless the notifier sets ``allow_http = true``;
- resolves the host itself and refuses loopback, private, link-local (cloud metadata
  ``169.254.169.254``), shared, reserved, multicast and unspecified addresses, IPv6 and
  IPv4-mapped forms included, unless the notifier allows them (``allow_private = true`` or
  ``allow_networks = ["10.0.0.0/8"]``);
- connects to the very address it checked (the connection is pinned, so a DNS answer that
  changes between the check and the connect - "DNS rebinding" - cannot steer it elsewhere), while
  the TLS SNI, the certificate hostname check and the ``Host`` header still use the URL's name;
- never follows redirects: a 3xx answer is an error;
- never puts the URL in a log line or an exception: messages say "the Slack webhook for
  notifier 'ops'".

Residual risks, said plainly: the check trusts the resolver's answer at send time (a name that
legitimately resolves to a public address is allowed, whoever controls it); HTTP(S) proxies from
the environment are not used (the connection is direct, which is what makes pinning possible).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from pydantic import BaseModel, ConfigDict, Field, field_validator

from certkeeper.clock import Clock
from certkeeper.errors import CertkeeperError, ConfigError, NotifyError
from certkeeper.plugins import PluginContext
from certkeeper.retry_after import parse_retry_after

log = logging.getLogger(__name__)


class _HideWebhookPaths(logging.Filter):
    """Masks the path of an in-flight webhook request in urllib3's DEBUG request line.

    A Slack or Teams webhook URL carries its secret in the path, and urllib3 logs
    ``"POST /services/T.../B.../... HTTP/1.1" 200`` at DEBUG; that line must not leak it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            paths = list(self.paths)
        if paths:
            message = record.getMessage()
            cleaned = message
            for path in paths:
                if len(path) < 2:
                    continue
                cleaned = cleaned.replace(path, "<webhook path hidden>")
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True

    @contextmanager
    def hiding(self, path: str) -> Iterator[None]:
        with self.lock:
            self.paths.add(path)
        try:
            yield
        finally:
            with self.lock:
                self.paths.discard(path)


_HIDE_PATHS = _HideWebhookPaths()
logging.getLogger("urllib3.connectionpool").addFilter(_HIDE_PATHS)

SECRET_PREFIXES = ("env:", "file:", "secret:")
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 20.0
USER_AGENT = "certkeeper-notifier/1"
MAX_BODY = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Addresses the ipaddress flags do not all cover: CGNAT shared space (RFC 6598), benchmarking
# (RFC 2544), IETF protocol assignments, local-use NAT64 (RFC 8215) and Teredo.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("198.18.0.0/15"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2001::/32"),
)
#: NAT64 well-known prefix (RFC 6052): on an IPv6-only network with DNS64, hooks.slack.com
#: resolves into it, so the embedded IPv4 address is judged instead of the prefix
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HttpTargetOptions(BaseModel):
    """Options every HTTP notifier takes besides its URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: allow a plain-http URL (an internal receiver without TLS)
    allow_http: bool = False
    #: allow any non-public address (loopback, RFC 1918, link-local, ...)
    allow_private: bool = False
    #: allow these networks only, e.g. ["10.20.0.0/16", "fd00::/8"]
    allow_networks: tuple[str, ...] = ()
    #: PEM bundle of CAs to trust for the receiver (default: the system store)
    ca_file: str | None = None
    timeout: float = Field(default=READ_TIMEOUT, gt=0, le=120)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (write e.g. 10.0.0.0/8)") from None
        return value


def is_secret_reference(value: str) -> bool:
    return value.startswith(SECRET_PREFIXES)


class SecretValue:
    """A secret option: a reference resolved at use time, or a literal. ``repr`` never shows it."""

    def __init__(self, value: str, context: PluginContext) -> None:
        self._value = value
        self._context = context

    @property
    def is_reference(self) -> bool:
        return is_secret_reference(self._value)

    def get(self) -> str:
        if self.is_reference:
            return self._context.resolve_secret(self._value)
        return self._value

    def __repr__(self) -> str:
        kind = self._value.split(":", 1)[0] + ":..." if self.is_reference else "literal"
        return f"SecretValue({kind})"

    __str__ = __repr__


_WARNED_LITERAL: set[tuple[str, str]] = set()


def secret_option(value: str, context: PluginContext, *, where: str, key: str) -> SecretValue:
    """Wrap a secret option; warn (naming the option, not the value) when it is given literally."""
    secret = SecretValue(value, context)
    if not secret.is_reference and (where, key) not in _WARNED_LITERAL:
        # Once per process: the daemon rebuilds notifiers on every delivery run.
        _WARNED_LITERAL.add((where, key))
        log.warning(
            "%s.%s is written literally in the config; store it with 'certkeeper secret set NAME' "
            "and write %s = \"secret:NAME\" (or env:VAR / file:PATH) instead",
            where, key, key,
        )
    return secret


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``, all checked) and what to call it (``host``)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address (else ``address``)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


class UrlPolicy:
    """Decides whether a webhook URL may be called, and where exactly to connect.

    ``what`` names the endpoint in messages ("the Slack webhook for notifier 'ops'"); the URL and
    the address it resolves to never appear in them.
    """

    def __init__(self, options: HttpTargetOptions, what: str) -> None:
        self.options = options
        self.what = what
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in options.allow_networks
        )

    def parse(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise NotifyError(f"{self.what} is not a valid URL", retryable=False) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not parts.hostname:
            raise NotifyError(f"{self.what} is not an http(s) URL", retryable=False)
        if scheme == "http" and not self.options.allow_http:
            raise NotifyError(
                f"{self.what} is plain http; use https or set allow_http = true", retryable=False
            )
        if parts.username or parts.password:
            raise NotifyError(f"{self.what} carries credentials in the URL; refused", retryable=False)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path

    def check_address(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when it may be called."""
        address = _embedded_ipv4(address)
        if any(address in network for network in self.allowed_networks if network.version == address.version):
            return None
        if address.is_loopback:
            reason = "a loopback address"
        elif address.is_link_local:
            reason = "a link-local address (cloud metadata lives there)"
        elif address.is_multicast:
            reason = "a multicast address"
        elif address.is_unspecified:
            reason = "an unspecified address"
        elif address.is_private or any(
            address in network for network in _EXTRA_BLOCKED if network.version == address.version
        ):
            reason = "a private address"
        elif address.is_reserved or not address.is_global:
            reason = "a reserved address"
        else:
            return None
        if self.options.allow_private:
            return None
        return reason

    def resolve(self, url: str) -> Target:
        """Parse, resolve and check ``url``; every address the name resolves to must pass."""
        scheme, host, port, path = self.parse(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            except (socket.gaierror, UnicodeError):
                raise NotifyError(f"the host name of {self.what} does not resolve") from None
            addresses = []
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                if address not in addresses:
                    addresses.append(address)
            if not addresses:
                raise NotifyError(f"the host name of {self.what} does not resolve")
        # All must pass: a name that resolves to one public and one private address could be
        # steered to the private one by whoever controls its DNS.
        for address in addresses:
            reason = self.check_address(address)
            if reason is not None:
                raise NotifyError(
                    f"{self.what} resolves to {reason}; refused (allow it with "
                    "allow_networks = [\"CIDR\"] or allow_private = true)",
                    retryable=False,
                )
        return Target(scheme=scheme, host=host, port=port, path=path,
                      addresses=tuple(str(address) for address in addresses))


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def post_json(
    policy: UrlPolicy,
    url: str,
    payload: Mapping[str, Any] | Sequence[Any] | bytes,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """POST ``payload`` (JSON, or bytes already encoded) to ``url`` under ``policy``.

    Connects to the checked address only, follows no redirect and retries nothing (the outbox
    retries). Raises NotifyError on a refused URL or a network failure; the caller judges status
    codes (see :func:`raise_for_status`).
    """
    target = policy.resolve(url)
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request_headers = {
        "Host": target.host_header,
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
    }
    request_headers.update(headers or {})
    timeout = urllib3.Timeout(
        total=CONNECT_TIMEOUT + policy.options.timeout, connect=CONNECT_TIMEOUT, read=policy.options.timeout
    )
    context: ssl.SSLContext | None = None
    if target.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=policy.options.ca_file)
        except (OSError, ssl.SSLError):
            raise NotifyError(f"the ca_file of {policy.what} cannot be read", retryable=False) from None
    # Try the checked addresses in order (IPv4 and IPv6 of one name), moving on only when a
    # connection could not be opened: once connected, the request may have been received.
    for index, address in enumerate(target.addresses):
        last = index == len(target.addresses) - 1
        pool = _pool(target, address, timeout, context)
        try:
            with _HIDE_PATHS.hiding(target.path):
                response = pool.urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers=request_headers,
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                )
                # Only the status, headers and an error word are used: read little of the body.
                data = response.read(MAX_BODY, decode_content=False) or b""
                response.release_conn()
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            if last:
                raise NotifyError(f"could not reach {policy.what} (connection failed or timed out)") from None
            continue
        except urllib3.exceptions.SSLError as exc:
            if not _certificate_refused(exc):
                # No TLS answer at all (a plain-text service, a port that hangs up): say what a
                # closed port says, so a test send cannot map which ports are open (SSRF, CWE-918).
                raise NotifyError(f"could not reach {policy.what} (connection failed or timed out)") from None
            # Retryable: the receiver may be mid-way through its own certificate renewal.
            raise NotifyError(
                f"the TLS handshake with {policy.what} failed (untrusted or wrong certificate)"
            ) from None
        except urllib3.exceptions.HTTPError:
            # One message for refused, unreachable and timed out, so a test send says nothing
            # about which ports are open where (the OWASP SSRF cheat sheet, above).
            raise NotifyError(f"could not reach {policy.what} (connection failed or timed out)") from None
        finally:
            pool.close()
        return Response(
            status=response.status,
            headers={key.lower(): value for key, value in response.headers.items()},
            body=data,
        )
    raise NotifyError(f"the host name of {policy.what} does not resolve")  # no addresses (unreachable)


def _certificate_refused(error: BaseException) -> bool:
    """Whether a TLS failure is our refusal of the server's certificate (a TLS server answered),
    rather than a server that did not speak TLS at all."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
    return False


def _pool(
    target: Target, address: str, timeout: urllib3.Timeout, context: ssl.SSLContext | None
) -> urllib3.HTTPConnectionPool:
    """A one-request pool connected to ``address``; TLS SNI and hostname check use the URL's host."""
    if context is None:
        return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
    return urllib3.HTTPSConnectionPool(
        address,
        target.port,
        timeout=timeout,
        retries=False,
        ssl_context=context,
        server_hostname=target.host,
        assert_hostname=target.host,
    )


def raise_for_status(response: Response, what: str, clock: Clock) -> None:
    """Turn a non-2xx answer into NotifyError: 429 waits for Retry-After, 5xx and 408 retry,
    3xx (never followed) and other 4xx are permanent."""
    status = response.status
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise NotifyError(
            f"{what} answered with a redirect (HTTP {status}); redirects are not followed", retryable=False
        )
    if status == 429:
        retry_after = _retry_after(response, clock)
        raise NotifyError(f"{what} is rate limiting us (HTTP 429)", retryable=True, retry_after=retry_after)
    if status >= 500 or status == 408:
        retry_after = _retry_after(response, clock)
        raise NotifyError(f"{what} failed (HTTP {status})", retryable=True, retry_after=retry_after)
    reason = _short_reason(response.body)
    suffix = f": {reason}" if reason else ""
    raise NotifyError(f"{what} refused the message (HTTP {status}){suffix}", retryable=False)


def _retry_after(response: Response, clock: Clock) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"), date=response.headers.get("date"),
                             now=clock.now())


def _short_reason(body: bytes) -> str:
    """A short, printable error word from the body (Slack answers e.g. ``invalid_payload``)."""
    text = body[:200].decode("utf-8", "replace").strip()
    if not text or len(text) > 80 or not all(ch.isalnum() or ch in "_-. " for ch in text):
        return ""
    return text


class WebhookSender:
    """One HTTP notifier's endpoint: its secret URL, its policy, and a checked POST."""

    def __init__(self, url: SecretValue, policy: UrlPolicy, clock: Clock) -> None:
        self.url = url
        self.policy = policy
        self.clock = clock

    @property
    def what(self) -> str:
        return self.policy.what

    def post(self, payload: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None) -> Response:
        try:
            url = self.url.get()
        except CertkeeperError as exc:
            # The reference (not the value) may be named: "environment variable X is not set".
            raise NotifyError(f"the URL of {self.what} cannot be read: {exc}") from None
        response = post_json(self.policy, url, payload, headers=headers)
        raise_for_status(response, self.what, self.clock)
        return response


def check_literal_url(url: SecretValue, policy: UrlPolicy, where: str) -> None:
    """Refuse a literal URL that can never work (not http(s), http without allow_http) at load time."""
    if url.is_reference:
        return
    try:
        policy.parse(url.get())
    except NotifyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
