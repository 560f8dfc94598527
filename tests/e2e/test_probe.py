"""The TLS probe: SNI per name, the served chain, SMTP STARTTLS, and the settle time."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import pytest

from certkeeper.binders import probe
from certkeeper.errors import ConfigError
from tests.fixtures.core import free_port
from tests.fixtures.gateways import NginxGateway, TestPKI

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("127.0.0.1:443", "tls", "127.0.0.1", 443),
        ("[::1]:8443", "tls", "::1", 8443),
        ("https://mail.contoso.com", "tls", "mail.contoso.com", 443),
        ("smtp://mail.contoso.com", "smtp", "mail.contoso.com", 25),
        ("smtp://10.0.0.1:587", "smtp", "10.0.0.1", 587),
    ],
)
def test_parse_endpoint(text: str, scheme: str, host: str, port: int) -> None:
    endpoint = probe.parse_endpoint(text)
    assert (endpoint.scheme, endpoint.host, endpoint.port) == (scheme, host, port)


@pytest.mark.parametrize("bad", ["mail.contoso.com", "ftp://x", "host:0", "host:99999", "https://"])
def test_parse_endpoint_refuses(bad: str) -> None:
    with pytest.raises(ConfigError):
        probe.parse_endpoint(bad)


def test_sni_for() -> None:
    assert probe.sni_for("mail.contoso.com") == "mail.contoso.com"
    assert probe.sni_for("*.contoso.com") == "certkeeper-probe.contoso.com"
    assert probe.sni_for("10.0.0.1") is None


def test_reads_leaf_and_chain(nginx_gateway: NginxGateway) -> None:
    served = probe.fetch(probe.parse_endpoint(nginx_gateway.endpoint), "mail.contoso.com")
    assert nginx_gateway.initial is not None
    assert served.fingerprint == nginx_gateway.initial.fingerprint
    assert len(served.chain_der) == 1  # the intermediate, read through get_unverified_chain


def test_settle_time_waits_for_the_gateway(nginx_gateway: NginxGateway, test_pki: TestPKI) -> None:
    new = test_pki.bundle("mail.contoso.com")
    nginx_gateway.install(new)
    # nothing reloaded yet: with no settle time the probe reports the old certificate at once
    quick = probe.verify_endpoints(new.fingerprint, [nginx_gateway.endpoint], new.names, settle_seconds=0)
    assert not quick.ok and nginx_gateway.initial is not None
    assert quick.checks[0].served_fingerprint == nginx_gateway.initial.fingerprint
    # the gateway picks it up 1.5 s later; a 10 s settle time sees it
    timer = threading.Timer(1.5, nginx_gateway.reload)
    timer.start()
    started = time.monotonic()
    try:
        settled = probe.verify_endpoints(
            new.fingerprint, [nginx_gateway.endpoint], new.names, settle_seconds=10, interval_seconds=0.25
        )
    finally:
        timer.join()
    assert settled.ok and 1.0 < time.monotonic() - started < 10


def test_gives_up_after_the_settle_time() -> None:
    sleeps: list[float] = []
    clock = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    result = probe.verify_endpoints(
        "00" * 32,
        [f"127.0.0.1:{free_port()}"],
        ["mail.contoso.com"],
        settle_seconds=2,
        interval_seconds=0.5,
        timeout=1,
        sleep=sleeps.append,
        monotonic=lambda: next(clock),
    )
    assert not result.ok and "no TLS handshake" in result.checks[0].message
    assert sleeps == [0.5, 0.5, 0.5]


def test_smtp_starttls(tmp_path: Path, test_pki: TestPKI) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    bundle = test_pki.bundle("mail.contoso.com")
    (tmp_path / "cert.pem").write_bytes(bundle.fullchain_pem)
    (tmp_path / "key.pem").write_bytes(bundle.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    port = free_port()
    controller = Controller(
        Sink(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        result = probe.verify_endpoints(
            bundle.fingerprint, [f"smtp://127.0.0.1:{port}"], bundle.names, settle_seconds=0
        )
        assert result.ok, result.summary()
        other = test_pki.bundle("mail.contoso.com")
        wrong = probe.verify_endpoints(
            other.fingerprint, [f"smtp://127.0.0.1:{port}"], other.names, settle_seconds=0
        )
        assert not wrong.ok and wrong.checks[0].served_fingerprint == bundle.fingerprint
    finally:
        controller.stop()


def test_smtp_without_starttls_is_a_failed_check() -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = probe.verify_endpoints(
            "00" * 32, [f"smtp://127.0.0.1:{port}"], ["mail.contoso.com"], settle_seconds=0
        )
    finally:
        controller.stop()
    assert not result.ok and "does not offer STARTTLS" in result.checks[0].message
