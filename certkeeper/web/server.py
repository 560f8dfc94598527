"""Routes of the status page on the daemon's HTTP server: ``/``, ``/certificates/ID``, ``/login``.

:func:`certkeeper.metrics.serve` hands every request to :meth:`StatusSite.handle` first; a path
that is not the page's (``/metrics``, ``/healthz``) gets None back and is served as before. The
site only reads: each page is :mod:`certkeeper.reports` data rendered by :mod:`.render`, with the
headers of :func:`security_headers` on every answer, errors included.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from certkeeper.errors import CertkeeperError, ConfigError, NotFound
from certkeeper.web import access

if TYPE_CHECKING:
    from certkeeper.service import Service

log = logging.getLogger(__name__)

#: a sign-in form is a few dozen bytes; anything longer is not one
MAX_FORM_BYTES = 4096
CERTIFICATES = "/certificates/"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def security_headers(*, html: bool = True) -> list[tuple[str, str]]:
    """Sent with every answer of the site: the strict policy, no sniffing, no referrer, no framing,
    no caching (the page changes and may be behind a login)."""
    from certkeeper.web.render import content_security_policy

    headers = [
        ("Content-Security-Policy", content_security_policy()),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Cache-Control", "no-store"),
    ]
    if html:
        headers.insert(0, ("Content-Type", "text/html; charset=utf-8"))
    return headers


class StatusSite:
    """The status page of one daemon.

    Args:
        service: read through :mod:`certkeeper.reports` only.
        token: the resolved ``[daemon] status_token``; None leaves the page open, which the
            daemon allows on a loopback address only (:func:`.access.startup_problem`).
        health: the daemon's ``/healthz`` data, shown in the page's header.
    """

    def __init__(self, service: Service, *, token: str | None,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.service = service
        self.token = token
        self.health = health
        self.wrong_tokens = access.WrongTokens()

    @classmethod
    def from_settings(cls, service: Service, health: Callable[[], Mapping[str, Any]] | None = None
                      ) -> StatusSite | None:
        """The site as ``[daemon]`` configures it (None when ``status_page = false``).

        Raises:
            ConfigError: the token reference cannot be resolved, or the token is too short.
        """
        settings = service.config.settings.daemon
        if not settings.status_page:
            return None
        token = None
        if settings.status_token:
            try:
                token = service.context.resolve_secret(settings.status_token).strip()
            except CertkeeperError as exc:
                raise ConfigError(f"[daemon] status_token: {exc}") from None
            problem = access.token_problem(token)
            if problem:
                raise ConfigError(problem)
        return cls(service, token=token, health=health)

    # -- routing --------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"", *,
               tls: bool = False, client: str = "", client_certificate: bool = False) -> Response | None:
        """Answer a request for the site, or None when ``target`` is not the site's.

        ``client`` is the peer's address: a client that sent too many wrong tokens is refused
        for a while (:class:`.access.WrongTokens`). ``client_certificate``: the connection
        presented a client certificate the server's TLS settings accept (:mod:`.tls`); a token,
        when one is set as well, is still asked for."""
        path, _, query = target.partition("?")
        if path != "/" and path != "/login" and not path.startswith(CERTIFICATES):
            return None
        if self.token is None and not client_certificate and not access.host_is_loopback(headers.get("Host")):
            # open on loopback only: a page reached under another name is a DNS rebinding attempt
            return self._page(403, "Not here", "Without a status token this page answers only to this machine's "
                              "own addresses (http://127.0.0.1 or http://[::1]).", back=False)
        now = self.service.clock.now()
        if self.token is not None:
            until = self.wrong_tokens.refused_until(client, now)
            if until is not None:
                return self._too_many(until, now)
        if path == "/login":
            return self._login(method, query, headers, body, tls=tls, client=client)
        if method != "GET":
            response = self._page(405, "Read-only", "This page only shows; it changes nothing.")
            response.headers.append(("Allow", "GET"))
            return response
        if not access.allowed(self.token, authorization=headers.get("Authorization"),
                              cookie_header=headers.get("Cookie"), now=now):
            if access.bearer(headers.get("Authorization")) is not None:
                self._wrong_token(client, now, "a request with a wrong bearer token")
            return self._unauthorized(None)
        try:
            if path == "/":
                return self._status()
            return self._certificate(unquote(path[len(CERTIFICATES):]))
        except NotFound as exc:
            return self._page(404, "Not found", str(exc))
        except Exception:
            log.exception("status page: cannot read the store")
            return self._page(503, "Unavailable", "The store cannot be read right now; the daemon's log says why.")

    # -- pages ----------------------------------------------------------------------------------

    def _daemon(self) -> Mapping[str, Any] | None:
        if self.health is None:
            return None
        try:
            return self.health()
        except Exception:  # noqa: BLE001 - the header is a nicety; the page still answers
            return None

    def _status(self) -> Response:
        from certkeeper.reports import overview_report
        from certkeeper.web.render import status_page

        now = self.service.clock.now()
        report = overview_report(self.service.store, now, self.service.config.settings)
        html = status_page(report, node=self.service.node or None, daemon=self._daemon())
        return Response(200, html.encode("utf-8"), security_headers())

    def _certificate(self, cert_id: str) -> Response:
        from certkeeper.reports import describe_certificate
        from certkeeper.web.render import certificate_page

        now = self.service.clock.now()
        detail = describe_certificate(self.service.store, now, cert_id)
        html = certificate_page(detail, now, node=self.service.node or None, daemon=self._daemon())
        return Response(200, html.encode("utf-8"), security_headers())

    def _page(self, status: int, title: str, message: str, *, back: bool = True) -> Response:
        from certkeeper.web.render import message_page

        html = message_page(title, message, back=back, node=self.service.node or None)
        return Response(status, html.encode("utf-8"), security_headers())

    def _unauthorized(self, error: str | None) -> Response:
        from certkeeper.web.render import login_page

        html = login_page(error=error, node=self.service.node or None)
        headers = security_headers()
        headers.append(("WWW-Authenticate", 'Bearer realm="certkeeper status"'))
        return Response(401, html.encode("utf-8"), headers)

    def _wrong_token(self, client: str, now: datetime, what: str) -> None:
        if self.wrong_tokens.record(client, now):
            until = self.wrong_tokens.refused_until(client, now)
            log.warning("status page: %s from %s; %d wrong tokens within %s, so that address is refused "
                        "until %s", what, client or "an unknown address", self.wrong_tokens.limit,
                        self.wrong_tokens.window, f"{until:%Y-%m-%d %H:%M:%S} UTC" if until else "later")
        else:
            log.warning("status page: %s from %s", what, client or "an unknown address")

    def _too_many(self, until: datetime, now: datetime) -> Response:
        seconds = max(1, math.ceil((until - now).total_seconds()))
        response = self._page(429, "Too many wrong tokens",
                              f"This address sent too many wrong tokens; try again in {seconds} seconds.")
        response.headers.append(("Retry-After", str(seconds)))
        return response

    def _login(self, method: str, query: str, headers: Mapping[str, str], body: bytes, *, tls: bool,
               client: str = "") -> Response:
        """``GET /login`` shows the form; ``GET /login?token=T`` and ``POST token=T`` sign in."""
        if self.token is None:
            return self._redirect_home(None)
        if method == "POST":
            content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BYTES:
                return self._unauthorized("Send the token from the form on this page.")
            given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        elif method == "GET":
            values = parse_qs(query).get("token")
            if values is None:
                from certkeeper.web.render import login_page

                html = login_page(node=self.service.node or None)
                return Response(200, html.encode("utf-8"), security_headers())
            given = values[0]
        else:
            return self._page(405, "Not allowed", "Sign in with GET /login?token=... or the form.")
        if not access.same(given.strip(), self.token):
            self._wrong_token(client, self.service.clock.now(), "a sign-in with a wrong token")
            return self._unauthorized("That token is not the status token.")
        value = access.session_value(self.token, self.service.clock.now())
        return self._redirect_home(access.set_cookie(value, secure=tls))

    def _redirect_home(self, cookie: str | None) -> Response:
        headers = security_headers(html=False)
        headers += [("Location", "/"), ("Content-Type", "text/plain; charset=utf-8")]
        if cookie is not None:
            headers.append(("Set-Cookie", cookie))
        return Response(303, b"See /\n", headers)
