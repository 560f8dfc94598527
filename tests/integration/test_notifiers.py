"""The notifiers against real servers: aiosmtpd (STARTTLS, SMTPS, AUTH) and a local HTTP(S) stub."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.errors import ConfigError, NotifyError
from certkeeper.model import Event, EventKind
from certkeeper.notifiers import Notifier, load_notifier
from certkeeper.notifiers.email import EmailNotifier
from certkeeper.notifiers.slack import SlackNotifier
from certkeeper.notifiers.teams import TeamsNotifier
from certkeeper.notifiers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify,
)
from tests.fixtures.http import HttpStub, Reply
from tests.fixtures.mail import SMTP_PASSWORD, MailServer
from tests.integration.notifier_helpers import HOOK_SECRET, SLACK_CANARY, context, expiring_event

LOOPBACK = {"allow_http": True, "allow_networks": ["127.0.0.0/8"]}


# --- email -------------------------------------------------------------------------------------


def test_email_starttls_auth_multipart(smtp_server: MailServer, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = EmailNotifier.from_options("mail", smtp_server.options(), context(clock, tmp_path))
    notifier.notify(expiring_event(clock))

    assert len(smtp_server.messages) == 1
    received = smtp_server.messages[0]
    assert received.login == "certkeeper"
    assert received.mail_from == "certkeeper@example.com"
    assert received.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    message = received.message
    assert message["Subject"] == "[certkeeper] expiring: mail"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    plain = text.get_content()
    assert "mail.contoso.com, autodiscover.contoso.com" in plain
    assert "6.5 days" in plain and "2026-12-07 00:00 UTC" in plain
    assert "What to do next:" in plain and "certkeeper renew" in plain
    body = html.get_content()
    assert "&amp; has not been renewed &lt;yet&gt;" in body  # escaped, not markup
    assert "urn:ietf:params:acme:error:rateLimited" in body


def test_email_implicit_tls(smtps_server: MailServer, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = EmailNotifier.from_options("mail", smtps_server.options(), context(clock, tmp_path))
    notifier.notify(expiring_event(clock))
    assert len(smtps_server.messages) == 1


def test_email_plain_relay_needs_explicit_none(plain_smtp_server: MailServer, clock: FrozenClock,
                                               tmp_path: Path) -> None:
    ctx = context(clock, tmp_path)
    # The default is STARTTLS: a relay without it fails rather than silently sending in clear.
    options = plain_smtp_server.options()
    del options["security"]
    with pytest.raises(NotifyError) as failure:
        EmailNotifier.from_options("relay", options, ctx).notify(expiring_event(clock))
    assert failure.value.retryable is False
    EmailNotifier.from_options("relay", plain_smtp_server.options(), ctx).notify(expiring_event(clock))
    assert len(plain_smtp_server.messages) == 1
    with pytest.raises(ConfigError, match="AUTH over an unencrypted connection"):
        EmailNotifier.from_options(
            "relay", plain_smtp_server.options(username="u", password="env:X"), ctx
        )


def test_email_untrusted_certificate_is_refused(smtp_server: MailServer, clock: FrozenClock,
                                                tmp_path: Path) -> None:
    options = smtp_server.options()
    del options["ca_file"]  # the system store does not trust the test CA
    notifier = EmailNotifier.from_options("mail", options, context(clock, tmp_path))
    with pytest.raises(NotifyError, match="TLS handshake"):
        notifier.notify(expiring_event(clock))
    assert smtp_server.messages == []


@pytest.mark.parametrize(("reply", "retryable"), [
    ("421 4.3.2 Service not available", True),
    ("451 4.3.0 Try again later", True),
    ("554 5.3.0 Transaction failed", True),
    ("550 5.1.1 Mailbox unavailable", False),
])
def test_email_reply_codes_classified(smtp_server: MailServer, clock: FrozenClock, tmp_path: Path,
                                      reply: str, retryable: bool) -> None:
    smtp_server.script(reply)
    notifier = EmailNotifier.from_options("mail", smtp_server.options(), context(clock, tmp_path))
    with pytest.raises(NotifyError) as failure:
        notifier.notify(expiring_event(clock))
    assert failure.value.retryable is retryable
    assert reply.split()[0] in str(failure.value)
    notifier.notify(expiring_event(clock))  # the script is used up: accepted now
    assert len(smtp_server.messages) == 1


def test_email_wrong_password_is_permanent_and_never_shown(
    smtp_server: MailServer, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "canary-wrong-password-55e1"
    monkeypatch.setenv("CK_TEST_SMTP_PASSWORD", wrong)
    notifier = EmailNotifier.from_options("mail", smtp_server.options(), context(clock, tmp_path))
    with pytest.raises(NotifyError) as failure:
        notifier.notify(expiring_event(clock))
    assert failure.value.retryable is False
    assert "535" in str(failure.value)
    assert wrong not in str(failure.value) and wrong not in repr(notifier.password)
    assert wrong not in caplog.text and SMTP_PASSWORD not in caplog.text


def test_email_connection_refused_is_retryable(clock: FrozenClock, tmp_path: Path) -> None:
    from tests.fixtures.core import free_port

    notifier = EmailNotifier.from_options(
        "mail",
        {"host": "127.0.0.1", "port": free_port(), "security": "none", "from": "a@example.com",
         "to": ["b@x.org"]},
        context(clock, tmp_path),
    )
    with pytest.raises(NotifyError, match="could not reach") as failure:
        notifier.notify(expiring_event(clock))
    assert failure.value.retryable is True


def test_email_options_errors_name_the_key(clock: FrozenClock, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"notifiers\.mail\.to"):
        EmailNotifier.from_options(
            "mail", {"host": "h", "from": "a@example.com", "to": []}, context(clock, tmp_path)
        )
    with pytest.raises(ConfigError, match=r"notifiers\.mail\.security"):
        EmailNotifier.from_options(
            "mail", {"host": "h", "from": "a@example.com", "to": ["b@example.com"], "security": "ssl"},
            context(clock, tmp_path),
        )


# --- Slack, webhook, Teams ----------------------------------------------------------------------


def slack(stub: HttpStub, clock: FrozenClock, tmp_path: Path, path: str = "/services/T000/B000/XXX",
          **options: object) -> SlackNotifier:
    """A Slack notifier whose URL is the secret 'slack-ops' (the stub URL plus a canary query)."""
    url = stub.url(path) + f"?canary={SLACK_CANARY}"
    merged = {"webhook_url": "secret:slack-ops", **LOOPBACK, **options}
    return SlackNotifier.from_options("ops", merged, context(clock, tmp_path, {"slack-ops": url}))


def test_slack_block_kit_message(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    slack(http_stub, clock, tmp_path).notify(expiring_event(clock))

    [request] = http_stub.received()
    assert request.method == "POST" and request.path.startswith("/services/T000/B000/XXX?")
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["host"] == f"127.0.0.1:{http_stub.port}"
    message = json.loads(request.body)
    assert "[certkeeper] expiring: mail" in message["text"]  # the notification fallback
    types = [block["type"] for block in message["blocks"]]
    assert types == ["header", "section", "section", "section", "context"]
    header, summary, facts, action, _context = message["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "[certkeeper] expiring: mail"}
    assert "&amp; has not been renewed &lt;yet&gt;" in summary["text"]["text"]  # mrkdwn escaped
    fields = {field["text"].split("\n", 1)[0]: field["text"].split("\n", 1)[1] for field in facts["fields"]}
    assert fields["*Certificate*"] == "mail"
    assert fields["*Event*"] == "expiring"
    assert fields["*Days left*"] == "6.5 days"
    assert fields["*Names*"] == "mail.contoso.com, autodiscover.contoso.com"
    assert fields["*Not after*"] == "2026-12-07 00:00 UTC"
    assert all(field["type"] == "mrkdwn" and len(field["text"]) <= 2000 for field in facts["fields"])
    assert len(facts["fields"]) <= 10
    assert action["text"]["text"].startswith("*What to do next*\n")


@pytest.mark.parametrize(("reply", "retryable", "retry_after"), [
    (Reply(429, {"Retry-After": "5"}, b"rate_limited"), True, 5.0),
    # HTTP-date form, measured against the receiver's Date (an hour behind the clock, 12:00): 61 min
    (Reply(429, {"Retry-After": "Mon, 30 Nov 2026 12:01:00 GMT", "Date": "Mon, 30 Nov 2026 11:00:00 GMT"}),
     True, 3660.0),
    (Reply(500, body=b"internal_error"), True, None),
    (Reply(503, {"Retry-After": "30"}), True, 30.0),
    (Reply(404, body=b"no_service"), False, None),
    (Reply(400, body=b"invalid_payload"), False, None),
])
def test_slack_answers_classified(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path, reply: Reply,
                                  retryable: bool, retry_after: float | None) -> None:
    path = "/services/T000/B000/XXX"
    http_stub.script(path, reply)
    with pytest.raises(NotifyError) as failure:
        slack(http_stub, clock, tmp_path, path).notify(expiring_event(clock))
    assert failure.value.retryable is retryable
    assert failure.value.retry_after == retry_after
    assert f"HTTP {reply.status}" in str(failure.value)
    assert "the Slack webhook for notifier 'ops'" in str(failure.value)
    assert SLACK_CANARY not in str(failure.value) and "127.0.0.1" not in str(failure.value)


def test_redirect_is_not_followed(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    http_stub.script("/hook", Reply(302, {"Location": http_stub.url("/internal-target")}))
    with pytest.raises(NotifyError, match="redirect") as failure:
        slack(http_stub, clock, tmp_path, "/hook").notify(expiring_event(clock))
    assert failure.value.retryable is False
    assert len(http_stub.received("/hook")) == 1
    assert http_stub.received("/internal-target") == []


@pytest.mark.parametrize("options", [
    {"allow_http": True},  # loopback without an allow-list
    {"allow_http": True, "allow_networks": ["10.0.0.0/8"]},  # an allow-list that does not cover it
])
def test_ssrf_loopback_refused_without_allow_list(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path,
                                                  options: dict[str, object]) -> None:
    notifier = SlackNotifier.from_options(
        "ops", {"webhook_url": "secret:s", **options}, context(clock, tmp_path, {"s": http_stub.url()})
    )
    with pytest.raises(NotifyError, match="loopback address; refused") as failure:
        notifier.notify(expiring_event(clock))
    assert failure.value.retryable is False
    assert http_stub.received() == []  # nothing reached the listener
    assert str(http_stub.port) not in str(failure.value)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:127.0.0.1]:9/", "loopback"),
    ("http://[::1]:9/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://100.64.0.1/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://localhost:9/", "loopback"),  # a name resolving to loopback
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 wrapping 169.254.169.254
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("http://2130706433/", "loopback"),  # 127.0.0.1 written as one number
])
def test_ssrf_addresses_refused(url: str, reason: str, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = WebhookNotifier.from_options(
        "hook", {"url": "secret:u", "secret": "secret:k", "allow_http": True},
        context(clock, tmp_path, {"u": url, "k": HOOK_SECRET}),
    )
    with pytest.raises(NotifyError, match=reason):
        notifier.notify(expiring_event(clock))


def test_allow_private_opt_in(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = SlackNotifier.from_options(
        "ops", {"webhook_url": "secret:s", "allow_http": True, "allow_private": True},
        context(clock, tmp_path, {"s": http_stub.url()}),
    )
    notifier.notify(expiring_event(clock))
    assert len(http_stub.received()) == 1


def test_http_needs_explicit_allow(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = SlackNotifier.from_options(
        "ops", {"webhook_url": "secret:s", "allow_networks": ["127.0.0.0/8"]},
        context(clock, tmp_path, {"s": http_stub.url()}),
    )
    with pytest.raises(NotifyError, match="plain http"):
        notifier.notify(expiring_event(clock))
    assert http_stub.received() == []
    # A literal URL is checked when the config is loaded.
    with pytest.raises(ConfigError, match=r"notifiers\.ops\.webhook_url: .*plain http"):
        SlackNotifier.from_options("ops", {"webhook_url": http_stub.url()}, context(clock, tmp_path))


def test_https_connects_to_the_checked_address_with_sni_and_hostname_check(
    https_stub: HttpStub, clock: FrozenClock, tmp_path: Path
) -> None:
    """https://localhost:PORT: pinned to the resolved loopback address, certificate checked for
    'localhost' (SNI and Host keep the name)."""
    options = {"webhook_url": "secret:s", "allow_networks": ["127.0.0.0/8", "::1/128"],
               "ca_file": str(https_stub.ca_file)}
    ctx = context(clock, tmp_path, {"s": https_stub.url()})
    SlackNotifier.from_options("ops", options, ctx).notify(expiring_event(clock))
    [request] = https_stub.received()
    assert request.headers["host"] == f"localhost:{https_stub.port}"
    # Without the test CA the handshake fails: the certificate really is verified.
    del options["ca_file"]
    with pytest.raises(NotifyError, match="TLS handshake"):
        SlackNotifier.from_options("ops", options, ctx).notify(expiring_event(clock))


def test_an_open_port_without_tls_reads_like_a_closed_one(http_stub: HttpStub, clock: FrozenClock,
                                                           tmp_path: Path) -> None:
    """https:// to a port where a plain-HTTP server listens, and to a closed port: the same words,
    so a test send does not tell which ports are open."""
    from tests.fixtures.core import free_port

    messages = []
    for port in (http_stub.port, free_port()):
        ctx = context(clock, tmp_path, {"s": f"https://127.0.0.1:{port}/hook"})
        notifier = SlackNotifier.from_options("ops", {"webhook_url": "secret:s", **LOOPBACK}, ctx)
        with pytest.raises(NotifyError) as failure:
            notifier.notify(expiring_event(clock))
        assert failure.value.retryable
        messages.append(str(failure.value))
    assert messages[0] == messages[1] == (
        "could not reach the Slack webhook for notifier 'ops' (connection failed or timed out)")
    import socket

    socket.create_connection(("127.0.0.1", http_stub.port), timeout=5).close()  # that port is open


def test_webhook_hmac_signature_verifies(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    notifier = WebhookNotifier.from_options(
        "hook", {"url": "secret:u", "secret": "secret:k", **LOOPBACK},
        context(clock, tmp_path, {"u": http_stub.url("/receiver"), "k": HOOK_SECRET}),
    )
    event = expiring_event(clock)
    notifier.notify(event)
    notifier.notify(event)  # a retry of the same alert
    first, second = http_stub.received("/receiver")
    timestamp = first.headers[TIMESTAMP_HEADER.lower()]
    signature = first.headers[SIGNATURE_HEADER.lower()]
    assert timestamp == str(int(clock.now().timestamp()))
    assert signature.startswith("sha256=")
    assert verify(HOOK_SECRET.encode(), timestamp, first.body, signature)
    # Receivers can do it without certkeeper: HMAC-SHA256 over "<timestamp>.<raw body>".
    import hashlib
    import hmac
    material = f"{timestamp}.".encode() + first.body
    expected = hmac.new(HOOK_SECRET.encode(), material, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert not verify(b"another key", timestamp, first.body, signature)
    # the timestamp is part of the signed material
    assert not verify(HOOK_SECRET.encode(), str(int(timestamp) + 1), first.body, signature)
    assert not verify(HOOK_SECRET.encode(), timestamp, first.body.replace(b"mail", b"evil"), signature)
    body = json.loads(first.body)
    assert body["kind"] == "expiring" and body["certificate_id"] == "mail" and body["days_left"] == 6.5
    assert body["id"] == first.headers[DELIVERY_HEADER.lower()] == second.headers[DELIVERY_HEADER.lower()]
    assert HOOK_SECRET.encode() not in first.body


def test_teams_adaptive_card_envelope(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    http_stub.script("/workflows/1", Reply(202, body=b""))
    notifier = TeamsNotifier.from_options(
        "teams", {"webhook_url": "secret:t", **LOOPBACK},
        context(clock, tmp_path, {"t": http_stub.url("/workflows/1")}),
    )
    notifier.notify(expiring_event(clock))
    [request] = http_stub.received()
    message = json.loads(request.body)
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {fact["title"]: fact["value"] for block in card["body"] if block["type"] == "FactSet"
             for fact in block["facts"]}
    assert facts["Certificate"] == "mail" and facts["Days left"] == "6.5 days"


def test_secrets_never_in_logs_or_errors(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    literal = http_stub.url("/literal") + f"?canary={SLACK_CANARY}"
    ctx = context(clock, tmp_path)
    notifier = SlackNotifier.from_options("literal-ops", {"webhook_url": literal, **LOOPBACK}, ctx)
    # warned (once per process), naming the option only
    assert "notifiers.literal-ops.webhook_url is written literally" in caplog.text
    SlackNotifier.from_options("literal-ops", {"webhook_url": literal, **LOOPBACK}, ctx)
    assert caplog.text.count("written literally") == 1
    messages = []
    for reply in (Reply(500), Reply(429, {"Retry-After": "1"}), Reply(302, {"Location": "/x"}), Reply(403)):
        http_stub.script("/literal", reply)
        with pytest.raises(NotifyError) as failure:
            notifier.notify(expiring_event(clock))
        messages.append(str(failure.value))
    notifier.notify(expiring_event(clock))
    refused = SlackNotifier.from_options("ops", {"webhook_url": literal, "allow_http": True}, ctx)
    with pytest.raises(NotifyError) as failure:
        refused.notify(expiring_event(clock))
    messages.append(str(failure.value))
    everything = caplog.text + "\n".join(messages) + repr(notifier.sender.url)
    assert SLACK_CANARY not in everything
    assert "/literal" not in everything


def test_registry_builds_every_notifier(http_stub: HttpStub, smtp_server: MailServer, clock: FrozenClock,
                                        tmp_path: Path) -> None:
    ctx = context(clock, tmp_path, {"u": http_stub.url(), "k": HOOK_SECRET})
    tables = {
        "email": smtp_server.options(),
        "slack": {"webhook_url": "secret:u", **LOOPBACK},
        "webhook": {"url": "secret:u", "secret": "secret:k", **LOOPBACK},
        "teams": {"webhook_url": "secret:u", **LOOPBACK},
    }
    for kind, options in tables.items():
        notifier = load_notifier(kind).from_options(kind, options, ctx)
        assert isinstance(notifier, Notifier)
        notifier.notify(Event(kind=EventKind.TEST, occurred_at=clock.now(), message="test"))
    assert len(http_stub.received()) == 3 and len(smtp_server.messages) == 1


def test_public_addresses_pass_the_policy() -> None:
    import ipaddress

    from certkeeper.notifiers.http import HttpTargetOptions, UrlPolicy

    policy = UrlPolicy(HttpTargetOptions(), "the webhook for notifier 'x'")
    for address in ("3.5.140.2", "2606:4700::1111", "64:ff9b::305:8c02", "2002:305:8c02::"):
        assert policy.check_address(ipaddress.ip_address(address)) is None, address
    narrow = UrlPolicy(HttpTargetOptions(allow_networks=("10.20.0.0/16",)), "w")
    assert narrow.check_address(ipaddress.ip_address("10.20.1.1")) is None
    assert narrow.check_address(ipaddress.ip_address("10.21.1.1")) == "a private address"
    assert narrow.check_address(ipaddress.ip_address("169.254.169.254")) is not None


def test_pinned_to_checked_addresses_tried_in_turn(clock: FrozenClock, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with an IPv4 and an IPv6 address: the receiver listens on ::1 only. The name is
    resolved once, every address is checked, and the connection goes to a checked address (the
    second, after the first refuses) - never through a second DNS lookup that could be rebound."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    try:
        server = V6(("::1", 0), Handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.server_address[1]
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def fake_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.test":
            lookups.append(host)
            # A rebinding resolver: the first answer is allowed, later ones point elsewhere.
            if len(lookups) % 2 == 0:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", port))]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        options: dict[str, Any] = {"webhook_url": "secret:s", "allow_http": True,
                                   "allow_networks": ["127.0.0.0/8", "::1/128"]}
        ctx = context(clock, tmp_path, {"s": f"http://hooks.example.test:{port}/hook"})
        SlackNotifier.from_options("ops", options, ctx).notify(expiring_event(clock))
        assert hits == [f"hooks.example.test:{port}"]  # Host keeps the name
        assert lookups == ["hooks.example.test"]  # resolved once: the connection used the checked IPs
        # The next lookup answers a private address: refused before any connection.
        with pytest.raises(NotifyError, match="private address"):
            SlackNotifier.from_options("ops", options, ctx).notify(expiring_event(clock))
        assert len(hits) == 1
        # Allowing only the IPv4 loopback refuses the name: every address must pass.
        options["allow_networks"] = ["127.0.0.0/8"]
        with pytest.raises(NotifyError, match="loopback"):
            SlackNotifier.from_options("ops", options, ctx).notify(expiring_event(clock))
        assert len(hits) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_email_header_injection_refused(clock: FrozenClock, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"notifiers\.mail\.from: .*line break"):
        EmailNotifier.from_options(
            "mail", {"host": "h", "from": "a@example.com\r\nBcc: x@evil.example", "to": ["b@example.com"]},
            context(clock, tmp_path),
        )
    with pytest.raises(ConfigError, match=r"notifiers\.mail\.to"):
        EmailNotifier.from_options(
            "mail", {"host": "h", "from": "a@example.com", "to": ["not-an-address"]}, context(clock, tmp_path)
        )
