"""Who may read the status page: loopback, a client certificate, a bearer token, or a session
cookie derived from the token.

Pure functions of their inputs (the token, a header, ``now``), so the rules are tested without a
server:

- On a loopback address with no ``[daemon] status_token`` the page is open, like ``/metrics``:
  only this machine reaches it.
- On any other address the daemon refuses to start without a token or required client
  certificates (:func:`startup_problem`; the certificate is checked by the TLS handshake and
  :mod:`.tls`, before a request reaches the page).
- Once a token is set it is required on every address: ``Authorization: Bearer TOKEN``, or a
  session cookie from ``/login`` (:func:`session_value`). The cookie holds an expiry and an
  HMAC-SHA256 of it keyed by the token, never the token: rotating the token ends every session.

Tokens and cookies are compared with :func:`hmac.compare_digest` (constant time), and a client
that sends :data:`MAX_WRONG_TOKENS` wrong tokens within :data:`GUESS_WINDOW` is refused, right token
or not, until the window has passed (:class:`WrongTokens`; OWASP Authentication Cheat Sheet,
"Protect Against Automated Attacks",
https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta

#: the cookie the login sets
COOKIE = "certkeeper_session"
#: how long a login lasts
SESSION_LIFETIME = timedelta(hours=12)
#: shorter tokens are refused at start: the page is reachable from the network
MIN_TOKEN_LENGTH = 16
_SESSION_CONTEXT = b"certkeeper status page session v1:"
#: wrong tokens one client address may send within :data:`GUESS_WINDOW` before it is refused
MAX_WRONG_TOKENS = 10
GUESS_WINDOW = timedelta(minutes=5)
#: client addresses remembered at most (the oldest is forgotten first), so a flood of
#: addresses cannot grow the daemon's memory
MAX_CLIENTS = 4096


def is_loopback(host: str) -> bool:
    """Whether ``host`` (from ``metrics_address``) only listens on this machine.

    ``127.0.0.0/8``, ``::1`` and ``localhost`` are; a wildcard, another address, or any other
    host name is not (a name could resolve anywhere).
    """
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_is_loopback(header: str | None) -> bool:
    """Whether a ``Host`` header names this machine (``127.0.0.1:9464``, ``[::1]:9464``,
    ``localhost``). A page open without a token answers only those, so a web page elsewhere cannot
    read it by pointing its own name at 127.0.0.1 (DNS rebinding)."""
    if not header:
        return False
    host = header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return is_loopback(host)


def startup_problem(host: str | None, *, page: bool, token_reference: str | None,
                    client_certificates: bool = False) -> str | None:
    """Why the daemon must not serve the page as configured (one line), or None.

    Args:
        host: the host part of ``[daemon] metrics_address`` (None: no HTTP server at all).
        page: ``[daemon] status_page``.
        token_reference: ``[daemon] status_token`` as written in the config.
        client_certificates: the server requires a client certificate (``[daemon]
            client_ca_file``), which guards the page as a token does.
    """
    if host is None or not page or token_reference or client_certificates or is_loopback(host):
        return None
    shown = f"[{host}]" if ":" in host else (host or "all addresses")
    return (f"[daemon] metrics_address listens on {shown}, beyond this machine, and the status page there "
            'needs [daemon] status_token = "secret:NAME" (certkeeper secret set NAME) or client certificates '
            "([daemon] tls_certificate and client_ca_file); "
            "or set [daemon] status_page = false to serve only /metrics and /healthz")


def token_problem(token: str) -> str | None:
    """Why a resolved token is unfit (too short to resist guessing), or None."""
    if len(token.strip()) < MIN_TOKEN_LENGTH:
        return f"[daemon] status_token is shorter than {MIN_TOKEN_LENGTH} characters; use a long random value"
    return None


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings (as UTF-8, so any character is allowed)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (RFC 6750 §2.1), or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _signature(token: str, expires: int) -> str:
    return hmac.new(token.encode("utf-8"), _SESSION_CONTEXT + str(expires).encode(), hashlib.sha256).hexdigest()


def session_value(token: str, now: datetime, lifetime: timedelta = SESSION_LIFETIME) -> str:
    """The cookie value for a login at ``now``: ``EXPIRES.HMAC`` (Unix seconds, hex)."""
    expires = int((now + lifetime).timestamp())
    return f"{expires}.{_signature(token, expires)}"


def session_valid(token: str, value: str, now: datetime) -> bool:
    """Whether a cookie value was made from ``token`` and has not expired."""
    expires_text, _, signature = value.partition(".")
    if not expires_text.isdigit() or not signature:
        return False
    expires = int(expires_text)
    if not same(signature, _signature(token, expires)):
        return False
    return expires > now.timestamp()


def cookie(header: str | None, name: str = COOKIE) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` header, or None."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def allowed(token: str | None, *, authorization: str | None, cookie_header: str | None, now: datetime) -> bool:
    """Whether a request may read the page: no token configured (a loopback bind), the bearer
    token, or a valid session cookie."""
    if token is None:
        return True
    given = bearer(authorization)
    if given is not None and same(given, token):
        return True
    session = cookie(cookie_header)
    return session is not None and session_valid(token, session, now)


def set_cookie(value: str, *, secure: bool, lifetime: timedelta = SESSION_LIFETIME) -> str:
    """The ``Set-Cookie`` header of a login: HttpOnly, SameSite=Strict, Secure over TLS."""
    attributes = [f"{COOKIE}={value}", "Path=/", f"Max-Age={int(lifetime.total_seconds())}", "HttpOnly",
                  "SameSite=Strict"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


class WrongTokens:
    """Wrong tokens per client address, to refuse a client that guesses.

    :meth:`refused_until` says whether a client is refused at ``now`` (and until when);
    :meth:`record` counts one wrong token. Thread-safe: the daemon's HTTP server answers each
    request on its own thread.
    """

    def __init__(self, limit: int = MAX_WRONG_TOKENS, window: timedelta = GUESS_WINDOW,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: datetime) -> deque[datetime]:
        times = self._seen.get(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def refused_until(self, client: str, now: datetime) -> datetime | None:
        """When ``client`` may try again, if it has sent ``limit`` wrong tokens within the window."""
        with self._lock:
            times = self._recent(client, now)
            if not times:
                self._seen.pop(client, None)
            if len(times) >= self.limit:
                return times[-self.limit] + self.window
            return None

    def record(self, client: str, now: datetime) -> bool:
        """Count a wrong token from ``client``; True when this one reaches the limit."""
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._seen[client] = times
            self._seen.move_to_end(client)
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
            return len(times) == self.limit
