"""Prove by a TLS handshake which certificate an endpoint serves.

The probe connects to each endpoint once per certificate name (that name as SNI), reads the leaf
the server presents (and the rest of the chain it sends), and compares the leaf's SHA-256
fingerprint with the bundle's. It does not judge trust: the question here is "is *our*
certificate served", not "would a client accept it" (that is :mod:`certkeeper.outlook.checker`).

Endpoints are written ``host:port`` (direct TLS), ``[v6addr]:port``, ``https://host[:port]`` or
``smtp://host[:port]`` (plain SMTP, then STARTTLS; port 25 by default). ``tls://`` is a synonym of
the bare form.

Gateways change what they serve with a delay (nginx workers finish old connections, IIS may keep
the old certificate for a moment after a binding change), so :func:`verify_endpoints` retries
until every check matches or the settle time runs out, and only then reports a failure.

The served chain: Python 3.13 exposes ``SSLSocket.get_unverified_chain()``. On 3.11 and 3.12 the
same call exists on the private ``SSLSocket._sslobj`` (added in 3.10 for the test suite); it is
used when present, and otherwise only the leaf (``getpeercert(binary_form=True)``) is read.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from certkeeper.errors import ConfigError
from certkeeper.model import Bundle, EndpointCheck, Verification

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
_ENCODING_DER = 2  # _ssl.ENCODING_DER: Certificate.public_bytes(format)
DEFAULT_SETTLE_SECONDS = 15.0
DEFAULT_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Endpoint:
    """Where to probe. ``scheme`` is ``tls`` (TLS from the first byte) or ``smtp`` (STARTTLS)."""

    scheme: str
    host: str
    port: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``host:port``, ``[::1]:443``, ``https://host[:port]``, ``smtp://host[:port]``.

    Raises:
        ConfigError: the text is not one of those forms.
    """
    raw = text.strip()
    if "://" in raw:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        defaults = {"https": 443, "tls": 443, "smtp": 25}
        if scheme not in defaults or not parts.hostname:
            raise ConfigError(f"endpoint {text!r}: use host:port, https://host[:port] or smtp://host[:port]")
        try:
            port = parts.port or defaults[scheme]
        except ValueError:
            raise ConfigError(f"endpoint {text!r}: bad port") from None
        return Endpoint("smtp" if scheme == "smtp" else "tls", parts.hostname, port, raw)
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"endpoint {text!r}: expected host:port")
    return Endpoint("tls", host.strip("[]"), int(port_text), raw)


@dataclass(frozen=True)
class Served:
    """What one handshake saw: the leaf and the certificates the server sent after it (DER)."""

    leaf_der: bytes
    chain_der: tuple[bytes, ...]
    tls_version: str | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.leaf_der)


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER, lower-case hex without colons (as in ``Bundle``)."""
    return hashlib.sha256(der).hexdigest()


def sni_for(name: str) -> str | None:
    """The SNI to send for a certificate name: wildcards get a made-up first label; IP addresses
    send none (RFC 6066 §3 forbids IP literals in SNI)."""
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return None
    if name.startswith("*."):
        return "certkeeper-probe" + name[1:]
    return name


def _probe_context() -> ssl.SSLContext:
    # We compare fingerprints, so trust is not checked here (the Outlook checker does that).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _read_served(sock: ssl.SSLSocket) -> Served:
    leaf = sock.getpeercert(binary_form=True)
    if not leaf:
        raise ssl.SSLError("the server sent no certificate")
    chain: tuple[bytes, ...] = ()
    getter = getattr(sock, "get_unverified_chain", None)
    if getter is None:  # Python < 3.13: the private method on the _ssl object
        getter = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        try:
            certs = getter() or []
            ders = [cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER) for cert in certs]
            chain = tuple(ders[1:]) if ders and ders[0] == leaf else tuple(ders)
        except (AttributeError, TypeError, ValueError, ssl.SSLError):
            chain = ()
    return Served(leaf_der=leaf, chain_der=chain, tls_version=sock.version())


def fetch(
    endpoint: Endpoint,
    server_name: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> Served:
    """One handshake with ``endpoint`` sending ``server_name`` as SNI; what it served.

    Raises:
        OSError: connection refused, timeout, TLS failure (``ssl.SSLError`` is an OSError),
            or an SMTP server that does not offer STARTTLS (``smtplib.SMTPException``).
    """
    context = context or _probe_context()
    if endpoint.scheme == "smtp":
        return _fetch_smtp(endpoint, server_name, timeout=timeout, context=context)
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return _read_served(tls)


def _fetch_smtp(
    endpoint: Endpoint, server_name: str | None, *, timeout: float, context: ssl.SSLContext
) -> Served:
    smtp = smtplib.SMTP(timeout=timeout)
    try:
        smtp.connect(endpoint.host, endpoint.port)
        smtp.ehlo("certkeeper.invalid")
        if not smtp.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError(f"{endpoint} does not offer STARTTLS")
        code, reply = smtp.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        # smtplib.starttls() would send the connect host as SNI; we need the certificate name.
        assert smtp.sock is not None
        with context.wrap_socket(smtp.sock, server_hostname=server_name) as tls:
            served = _read_served(tls)
        smtp.sock = None
        return served
    finally:
        try:
            smtp.close()
        except OSError:
            pass


def check_once(
    endpoint: Endpoint, server_name: str | None, expected_fingerprint: str, *, timeout: float
) -> EndpointCheck:
    """Probe once; an :class:`EndpointCheck` that says what was served or why nothing was."""
    try:
        served = fetch(endpoint, server_name, timeout=timeout)
    except (OSError, smtplib.SMTPException, ValueError) as exc:  # ValueError: a name ssl cannot send
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return EndpointCheck(str(endpoint), server_name, False, None, f"no TLS handshake: {reason}")
    if served.fingerprint == expected_fingerprint.lower():
        return EndpointCheck(str(endpoint), server_name, True, served.fingerprint, "serves the certificate")
    return EndpointCheck(
        str(endpoint),
        server_name,
        False,
        served.fingerprint,
        f"serves another certificate (sha256 {served.fingerprint[:16]}..., "
        f"expected {expected_fingerprint[:16]}...)",
    )


def verify_endpoints(
    expected_fingerprint: str,
    endpoints: Iterable[str | Endpoint],
    names: Sequence[str],
    *,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Verification:
    """Probe every endpoint with every name as SNI until all serve ``expected_fingerprint``.

    Checks that already matched are not repeated. Gives up after ``settle_seconds`` and returns
    the last result of each check (so ``Verification.ok`` is False and the failing checks say
    what was served instead).
    """
    parsed = [item if isinstance(item, Endpoint) else parse_endpoint(item) for item in endpoints]
    server_names: list[str | None] = []
    for name in names or (None,):
        sni = sni_for(name) if name else None
        if sni not in server_names:
            server_names.append(sni)
    pending = [(endpoint, sni) for endpoint in parsed for sni in server_names]
    results: dict[tuple[str, str | None], EndpointCheck] = {}
    deadline = monotonic() + settle_seconds
    while True:
        still: list[tuple[Endpoint, str | None]] = []
        for endpoint, sni in pending:
            check = check_once(endpoint, sni, expected_fingerprint, timeout=timeout)
            results[(endpoint.text, sni)] = check
            if not check.ok:
                still.append((endpoint, sni))
        pending = still
        if not pending or monotonic() + interval_seconds > deadline:
            break
        log.debug("%d check(s) not matching yet; retrying in %.1fs", len(pending), interval_seconds)
        sleep(interval_seconds)
    ordered = [results[(endpoint.text, sni)] for endpoint in parsed for sni in server_names]
    return Verification(checks=tuple(ordered))


class ProbedEndpoints:
    """Mixin for binders that prove a deployment by probing ``endpoints`` (files, HAProxy).

    The binder sets ``endpoints``, ``settle_seconds``, ``probe_timeout`` and ``_prober`` (a test
    hook replacing the network probe) in its ``__init__``.
    """

    endpoints: tuple[str, ...]
    settle_seconds: float
    probe_timeout: float
    _prober: Callable[[Bundle], Verification] | None

    def _setup_probe(
        self,
        verify: Iterable[str],
        settle_seconds: float,
        probe_timeout: float,
        prober: Callable[[Bundle], Verification] | None,
    ) -> None:
        """Check the endpoints now (a typo is a config error, not a failed deploy) and keep them."""
        self.endpoints = tuple(verify)
        for endpoint in self.endpoints:
            parse_endpoint(endpoint)
        self.settle_seconds = settle_seconds
        self.probe_timeout = probe_timeout
        self._prober = prober

    def verify(self, bundle: Bundle) -> Verification:
        """Probe the configured endpoints with every certificate name as SNI."""
        if self._prober is not None:
            return self._prober(bundle)
        return verify_endpoints(
            bundle.fingerprint,
            self.endpoints,
            bundle.names,
            settle_seconds=self.settle_seconds,
            timeout=self.probe_timeout,
        )
