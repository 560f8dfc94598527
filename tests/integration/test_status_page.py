"""The status page served by metrics.serve (what the daemon starts) over a real store: the token
flow, the security headers, no secret on any page, `certkeeper status --html`, and the daemon's
refusal to open the page beyond loopback without a token."""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.daemon import DaemonState
from certkeeper.metrics import serve
from certkeeper.service import Service
from certkeeper.store import events, secrets
from certkeeper.web import access
from certkeeper.web.server import StatusSite
from tests.fixtures.core import free_port, run_cli, to_toml
from tests.fixtures.gateways import ReloadingTlsServer
from tests.fixtures.http import HttpStub, Reply

TOKEN = "status-token-canary-5d1c9a7e42b8"  # a test token, and a canary
SLACK_CANARY = "slack-canary-T000-B000-9e4f"
STORED_CANARY = "stored-secret-canary-0c77"
HOSTILE = '<script>alert("event")</script>'


@dataclass
class World:
    service: Service
    clock: FrozenClock
    port: int
    slack_url: str

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode("utf-8")
        finally:
            connection.close()


def build_service(home: Path, clock: FrozenClock, http_stub: HttpStub, gateway: ReloadingTlsServer,
                  fullchain: Path, key: Path, *, token: bool = True) -> Service:
    binding = {"type": "files", "name": "gateway", "fullchain": str(fullchain), "key": str(key),
               "verify": [f"127.0.0.1:{gateway.port}"], "settle_seconds": 0, "probe_timeout": 3}
    daemon: dict[str, Any] = {"node": "cas01"}
    if token:
        daemon["status_token"] = "secret:status-token"
    config = parse({
        # ECDSA keys: RSA key generation would be most of these tests' time
        "issuers": {"internal": {"type": "internal-ca", "ca_key_type": "ecdsa-p256"},
                    "locked": {"type": "internal-ca", "name_constraints": ["fabrikam.com"],
                               "ca_key_type": "ecdsa-p256"}},
        "certificates": [
            {"id": "mail", "names": ["mail.contoso.com", "autodiscover.contoso.com"], "bindings": [binding],
             "key_type": "ecdsa-p256"},
            {"id": "legacy", "names": ["legacy.contoso.com"], "issuer": "locked", "key_type": "ecdsa-p256"},
        ],
        "notifiers": {"ops": {"type": "slack", "webhook_url": "secret:slack-ops", "allow_http": True,
                              "allow_networks": ["127.0.0.0/8"]}},
        "daemon": daemon,
    }, data_dir=home / "data")
    service = Service.open(config, clock=clock, node="cas01")
    slack_url = http_stub.url("/services/T000/B000/" + SLACK_CANARY)
    with service.store.session() as session:
        secrets.put(session, service.store.sealer, "slack-ops", slack_url, clock.now())
        secrets.put(session, service.store.sealer, "status-token", TOKEN, clock.now())
        secrets.put(session, service.store.sealer, "unrelated", STORED_CANARY, clock.now())
    service.specs.sync_config()
    service.reconcile()  # mail is issued, deployed, verified; legacy is refused by its CA
    http_stub.script("/services/T000/B000/" + SLACK_CANARY, Reply(500), Reply(500), Reply(500))
    service.alerting.deliver()  # the Slack endpoint fails: the alerts wait in the outbox
    with service.store.session() as session:
        events.record(session, "note", HOSTILE, at=clock.now(), certificate_id="mail", node="cas01")
    return service


def _serve(service: Service, clock: FrozenClock) -> Iterator[World]:
    def health() -> dict[str, Any]:
        return {"ok": True, "node": "cas01", "issuer": True, "version": "test"}

    port = free_port()
    site = StatusSite.from_settings(service, health)
    server = serve(f"127.0.0.1:{port}", service, DaemonState(), health, site=site)
    try:
        yield World(service, clock, port, "")
    finally:
        server.shutdown()
        server.server_close()
        service.close()


@pytest.fixture
def world(home: Path, clock: FrozenClock, http_stub: HttpStub,
          tls_gateway: tuple[ReloadingTlsServer, Path, Path]) -> Iterator[World]:
    service = build_service(home, clock, http_stub, *tls_gateway)
    for item in _serve(service, clock):
        item.slack_url = http_stub.url("/services/T000/B000/" + SLACK_CANARY)
        yield item


@pytest.fixture
def open_world(home: Path, clock: FrozenClock, http_stub: HttpStub,
               tls_gateway: tuple[ReloadingTlsServer, Path, Path]) -> Iterator[World]:
    service = build_service(home, clock, http_stub, *tls_gateway, token=False)
    yield from _serve(service, clock)


def assert_security_headers(headers: http.client.HTTPMessage) -> None:
    policy = headers["Content-Security-Policy"]
    assert policy is not None and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


def session_cookie(headers: http.client.HTTPMessage) -> tuple[str, str]:
    """(name=value, the whole Set-Cookie header)."""
    set_cookie = headers["Set-Cookie"]
    assert set_cookie is not None
    return set_cookie.split(";")[0], set_cookie


def test_the_token_flow(world: World) -> None:
    status, headers, body = world.request("GET", "/")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="certkeeper status"'
    assert "Authorization: Bearer TOKEN" in body and "/login?token=TOKEN" in body and 'action="/login"' in body
    assert "mail.contoso.com" not in body
    assert_security_headers(headers)

    status, headers, body = world.request("GET", "/", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and "mail.contoso.com" in body and "legacy" in body
    assert_security_headers(headers)
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert world.request("GET", "/", {"Authorization": "Bearer not-the-token-at-all"})[0] == 401
    assert world.request("GET", "/certificates/mail")[0] == 401

    # a wrong token at the login: 401, the form again with the reason, no cookie
    status, headers, body = world.request("GET", "/login?" + urlencode({"token": "wrong-token-0123456789"}))
    assert status == 401 and "That token is not the status token." in body and headers["Set-Cookie"] is None

    # the one-time login: a cookie holding a session derived from the token, never the token
    status, headers, _ = world.request("GET", "/login?" + urlencode({"token": TOKEN}))
    assert status == 303 and headers["Location"] == "/"
    cookie, set_cookie = session_cookie(headers)
    assert TOKEN not in set_cookie
    attributes = [part.strip() for part in set_cookie.split(";")]
    assert "HttpOnly" in attributes and "SameSite=Strict" in attributes and "Path=/" in attributes
    assert "Secure" not in attributes  # plain http on loopback; Secure is set over TLS
    status, _, body = world.request("GET", "/", {"Cookie": cookie})
    assert status == 200 and "mail.contoso.com" in body
    status, _, body = world.request("GET", "/certificates/mail", {"Cookie": cookie})
    assert status == 200 and "Revisions" in body and "gateway" in body

    # the form posts the token the same way
    form = urlencode({"token": TOKEN}).encode()
    status, headers, _ = world.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, form)
    assert status == 303
    posted, _ = session_cookie(headers)
    assert world.request("GET", "/", {"Cookie": posted})[0] == 200
    bad = urlencode({"token": "nope-nope-nope-nope"}).encode()
    assert world.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, bad)[0] == 401

    # a forged or expired session is no session
    forged = cookie.split("=")[0] + "=" + str(2**40) + "." + "0" * 64
    assert world.request("GET", "/", {"Cookie": forged})[0] == 401
    world.clock.advance(access.SESSION_LIFETIME + timedelta(seconds=1))
    assert world.request("GET", "/", {"Cookie": cookie})[0] == 401
    assert world.request("GET", "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_read_only_errors_and_metrics_beside_the_page(world: World) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = world.request("GET", "/certificates/nothing-here", auth)
    assert status == 404 and "no certificate with id" in body
    assert_security_headers(headers)
    status, headers, _ = world.request("POST", "/", auth, b"x=1")
    assert status == 405 and headers["Allow"] == "GET"
    # /metrics and /healthz answer as before (Prometheus scrapes without the page's token)
    assert world.request("GET", "/metrics")[0] == 200
    assert world.request("GET", "/healthz")[0] == 200
    assert world.request("GET", "/elsewhere")[0] == 404
    # a malformed request body length is an empty form, not a dropped connection
    assert world.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                            "Content-Length": "many"})[0] == 401


def test_the_page_shows_health_matrix_alerts_and_events_escaped(world: World) -> None:
    status, _, body = world.request("GET", "/", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    # the certificates with their health and reason
    mail_row = re.search(r'<tr data-certificate="mail">.*?</tr>', body, re.S)
    legacy_row = re.search(r'<tr data-certificate="legacy">.*?</tr>', body, re.S)
    assert mail_row is not None and legacy_row is not None
    assert "Ready" in mail_row.group(0) and "autodiscover.contoso.com" in mail_row.group(0)
    assert "Failing" in legacy_row.group(0) and "name constraints" in legacy_row.group(0)
    # the node matrix: cas01 serves mail's current revision (verified by a TLS handshake)
    matrix = body.split('id="matrix"')[1].split("</table>")[0]
    assert "cas01" in matrix and "gateway" in matrix and "yes" in matrix and "drift" not in matrix
    # the alerts waiting for Slack, by the notifier's name
    alerts = body.split('id="alerts-heading"')[1].split("</section>")[0]
    assert "ops" in alerts and "rejected" in alerts and "HTTP 500" in alerts
    # the last events, a hostile one as text
    assert "&lt;script&gt;alert(&#34;event&#34;)&lt;/script&gt;" in body and HOSTILE not in body
    # the timeline: one mark per certificate
    assert body.count('class="mark"') == 2


def test_no_secret_key_or_webhook_url_on_any_page(world: World, ck: Any, home: Path) -> None:
    status, headers, _ = world.request("GET", "/login?" + urlencode({"token": TOKEN}))
    assert status == 303
    cookie, _ = session_cookie(headers)
    pages = [world.request("GET", "/")[2], world.request("GET", "/login")[2],
             world.request("GET", "/login?token=wrong-token-0123456789")[2]]
    for path in ("/", "/certificates/mail", "/certificates/legacy", "/certificates/nothing"):
        pages.append(world.request("GET", path, {"Cookie": cookie})[2])
    static = home / "status.html"
    (home / "certkeeper.toml").write_text(to_toml({"daemon": {"status_token": "secret:status-token"}}))
    assert ck("status", "--html", str(static)).code == 0
    pages.append(static.read_text())
    assert any("mail.contoso.com" in page for page in pages)
    for page in pages:
        for canary in (TOKEN, SLACK_CANARY, STORED_CANARY, world.slack_url, "/services/T000", "PRIVATE KEY",
                       "BEGIN"):
            assert canary not in page


def test_a_login_is_never_logged_with_its_token(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="certkeeper"):
        assert world.request("GET", "/login?" + urlencode({"token": TOKEN}))[0] == 303
        assert world.request("GET", "/login?token=wrong-token-0123456789")[0] == 401
    assert "GET /login?" in caplog.text  # the request was logged...
    assert TOKEN not in caplog.text and "wrong-token-0123456789" not in caplog.text  # ...without its query


def test_a_client_that_guesses_the_token_is_refused_for_a_while(world: World,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with caplog.at_level(logging.WARNING, logger="certkeeper"):
        for attempt in range(access.MAX_WRONG_TOKENS):
            guess = f"guess-{attempt:02d}-0123456789abcdef"
            if attempt % 2:
                status = world.request("GET", "/", {"Authorization": f"Bearer {guess}"})[0]
            else:
                status = world.request("POST", "/login", form, urlencode({"token": guess}).encode())[0]
            assert status == 401
    assert "so that address is refused until" in caplog.text and "guess-" not in caplog.text
    # refused now, the right token included, on every path of the page; Retry-After says how long
    for path, headers in (("/", {"Authorization": f"Bearer {TOKEN}"}), ("/login?token=" + TOKEN, {})):
        status, reply, body = world.request("GET", path, headers)
        assert status == 429 and "too many wrong tokens" in body and TOKEN not in body
        assert 0 < int(reply["Retry-After"]) <= access.GUESS_WINDOW.total_seconds()
    assert world.request("GET", "/metrics")[0] == 200  # the metrics beside the page are not the page's
    # a first visit without any token is no guess, and the window passing lets the address in again
    world.clock.advance(access.GUESS_WINDOW)
    assert world.request("GET", "/")[0] == 401
    assert world.request("GET", "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_an_open_page_answers_only_to_this_machines_names(open_world: World) -> None:
    status, headers, body = open_world.request("GET", "/")
    assert status == 200 and "mail.contoso.com" in body
    assert_security_headers(headers)
    # DNS rebinding: a site elsewhere pointing its name at 127.0.0.1 gets nothing
    status, _, body = open_world.request("GET", "/", {"Host": f"attacker.example:{open_world.port}"})
    assert status == 403 and "mail.contoso.com" not in body
    assert open_world.request("GET", "/", {"Host": f"localhost:{open_world.port}"})[0] == 200
    # no token, no login: /login leads home
    status, headers, _ = open_world.request("GET", "/login")
    assert status == 303 and headers["Set-Cookie"] is None


def test_status_html_writes_one_self_contained_page(ck: Any, home: Path) -> None:
    (home / "certkeeper.toml").write_text(to_toml({
        "issuers": {"locked": {"type": "internal-ca", "name_constraints": ["fabrikam.com"]}},
        "certificates": [{"id": "mail", "names": ["mail.contoso.com"]},
                         {"id": "legacy", "names": ["legacy.contoso.com"], "issuer": "locked"}],
    }))
    assert ck("renew").code == 1  # legacy is refused
    target = home / "out" / "status.html"
    target.parent.mkdir()

    done = ck("status", "--html", str(target))

    assert done.code == 0, done
    html = target.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "mail.contoso.com" in html and "legacy.contoso.com" in html and "Failing" in html
    assert 'http-equiv="Content-Security-Policy"' in html and "<script" not in html
    # every certificate's details are in the file, linked from the table
    assert 'href="#cert-mail"' in html and 'id="cert-mail"' in html and 'id="cert-mail-revisions"' in html
    # no reference to anything outside the file
    assert not re.search(r"""(?:src|href|action)=["'](?:https?:|//)""", html)
    assert "@import" not in html and "url(" not in html
    # - writes to stdout
    out = ck("status", "--html", "-")
    assert out.code == 0 and out.out.startswith("<!DOCTYPE html>") and "mail.contoso.com" in out.out
    assert ck("status", "--html", "-", "--json").code == 2


@pytest.mark.parametrize("address", ["0.0.0.0:{port}", "[::]:{port}"])
def test_the_daemon_refuses_an_open_page_beyond_loopback(home: Path, address: str) -> None:
    port = free_port()
    (home / "certkeeper.toml").write_text(to_toml({"daemon": {"metrics_address": address.format(port=port)}}))

    done = run_cli("daemon", timeout=60)

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[daemon] status_token" in lines[0] and "[daemon] metrics_address" in lines[0], \
        done.stderr
    assert not (home / "data" / "certkeeper.db").exists()  # refused before anything was created


def test_the_daemon_refuses_a_status_token_it_cannot_read(home: Path) -> None:
    (home / "certkeeper.toml").write_text(to_toml({"daemon": {
        "metrics_address": f"127.0.0.1:{free_port()}", "status_token": "env:CERTKEEPER_TEST_NO_SUCH_VARIABLE"}}))

    done = run_cli("daemon", timeout=60)

    assert done.returncode == 1
    assert "[daemon] status_token" in done.stderr and "CERTKEEPER_TEST_NO_SUCH_VARIABLE" in done.stderr
