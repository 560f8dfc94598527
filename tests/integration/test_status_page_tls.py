"""The daemon's server over HTTPS with a certificate certkeeper manages, and client certificates
instead of a token: real TLS handshakes on loopback, a client CA from trustme, the built-in CA
issuing the server's certificate. One test runs the daemon itself."""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.daemon import DaemonState
from certkeeper.errors import ConfigError
from certkeeper.issuers.internal_ca import InternalCA
from certkeeper.metrics import serve
from certkeeper.service import Service
from certkeeper.web.server import StatusSite
from certkeeper.web.tls import HANDSHAKE_SECONDS, ServerTls
from tests.fixtures.core import certkeeper_env, free_port, run_cli, to_toml
from tests.support import start_certkeeper, stop_process, wait_for

SERVER_NAME = "cas01.contoso.com"
#: how a refused handshake reaches a client: an alert, or a reset/closed socket (TLS 1.3 clients
#: learn of it on their first read; http.client.RemoteDisconnected is a ConnectionError)
REFUSED = (ssl.SSLError, ConnectionError)


def https_get(port: int, root_pem: bytes, path: str, client: trustme.LeafCert | None = None, *,
              host: str = SERVER_NAME) -> tuple[int, str, str]:
    """GET over HTTPS from 127.0.0.1:``port``, verifying the server as ``cas01.contoso.com`` against
    ``root_pem``, with ``client``'s certificate if given; returns (status, body, the served leaf's
    SHA-256)."""
    context = ssl.create_default_context(cadata=root_pem.decode("ascii"))
    if client is not None:
        client.configure_cert(context)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    wrapped = context.wrap_socket(raw, server_hostname=SERVER_NAME)
    try:
        der = wrapped.getpeercert(binary_form=True)
        assert der is not None
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.sock = wrapped
        connection.request("GET", path, headers={"Host": f"{host}:{port}"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8"), hashlib.sha256(der).hexdigest()
    finally:
        wrapped.close()


@dataclass
class Tls:
    service: Service
    tls: ServerTls
    port: int
    root_pem: bytes
    clients: trustme.CA

    def get(self, path: str, client: trustme.LeafCert | None = None) -> tuple[int, str, str]:
        return https_get(self.port, self.root_pem, path, client)


@contextmanager
def serving(service: Service, tls: ServerTls) -> Iterator[int]:
    """A second HTTPS server (``/metrics``, ``/healthz``) over ``service`` with ``tls``; yields its port."""
    port = free_port()
    server = serve(f"127.0.0.1:{port}", service, DaemonState(), lambda: {"ok": True}, tls=tls)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def settings(client_ca: Path, *, names: tuple[str, ...] = ("alice@contoso.com",)) -> dict[str, Any]:
    # ECDSA keys throughout: RSA key generation would be most of these tests' time
    return {
        "issuers": {"internal": {"type": "internal-ca", "ca_key_type": "ecdsa-p256"}},
        "certificates": [{"id": "status", "names": [SERVER_NAME], "key_type": "ecdsa-p256"},
                         {"id": "mail", "names": ["mail.contoso.com"], "key_type": "ecdsa-p256"}],
        "daemon": {"node": "cas01", "tls_certificate": "status", "client_ca_file": str(client_ca),
                   "client_names": list(names)},
    }


@pytest.fixture
def client_ca(tmp_path: Path) -> trustme.CA:
    return trustme.CA(organization_name="Contoso users")


@pytest.fixture
def https(home: Path, clock: FrozenClock, client_ca: trustme.CA) -> Iterator[Tls]:
    ca_file = home / "users-ca.pem"
    client_ca.cert_pem.write_to_path(str(ca_file))
    config = parse(settings(ca_file), data_dir=home / "data")
    service = Service.open(config, clock=clock, node="cas01")
    service.specs.sync_config()
    service.reconcile()  # both certificates issued by the built-in CA
    issuer = service.context.issuer("internal")
    assert isinstance(issuer, InternalCA)
    tls = ServerTls("status", service.inventory.bundle, client_ca_file=ca_file,
                    client_names=config.settings.daemon.client_names)

    def health() -> dict[str, Any]:
        return {"ok": True, "node": "cas01", "issuer": True, "version": "test"}

    port = free_port()
    server = serve(f"127.0.0.1:{port}", service, DaemonState(), health,
                   site=StatusSite.from_settings(service, health), tls=tls)
    try:
        yield Tls(service, tls, port, issuer.root_pem(), client_ca)
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_a_listed_client_certificate_reads_page_and_metrics_under_the_hosts_own_name(https: Tls) -> None:
    alice = https.clients.issue_cert("alice@contoso.com")

    status, body, served = https.get("/", alice)

    # the page answers a request addressed to the host's name (no token, no loopback name needed)
    assert status == 200 and "mail.contoso.com" in body and SERVER_NAME in body
    # the server presents the stored revision, and it verified to the built-in root as cas01
    assert served == https.service.inventory.bundle("status").fingerprint
    status, body, _ = https.get("/metrics", alice)
    assert status == 200 and 'certkeeper_certificate_expiration_timestamp_seconds{' in body
    assert https.get("/healthz", alice)[0] == 200


@pytest.mark.parametrize("who", ["nobody", "a stranger CA"])
def test_no_client_certificate_or_one_from_another_ca_fails_the_handshake(https: Tls, who: str,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    client = None if who == "nobody" else trustme.CA().issue_cert("alice@contoso.com")

    # TLS 1.3 clients learn of the refusal on their first read, TLS 1.2 clients in the handshake
    with pytest.raises(REFUSED):
        https.get("/", client)
    with pytest.raises(REFUSED):
        https.get("/metrics", client)


def test_a_certificate_from_the_ca_but_not_on_client_names_is_refused(https: Tls,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    bob = https.clients.issue_cert("bob.contoso.com", common_name="bob")

    with caplog.at_level(logging.WARNING, logger="certkeeper.metrics"):
        status, body, _ = https.get("/", bob)
        metrics_status, _, _ = https.get("/metrics", bob)

    assert status == 403 and "bob" in body and "client_names" in body
    assert "mail.contoso.com" not in body
    assert metrics_status == 403
    assert any("bob.contoso.com" in record.getMessage() and "client_names" in record.getMessage()
               for record in caplog.records)


def test_a_plain_http_request_to_the_https_port_gets_nothing(https: Tls) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", https.port, timeout=10)
    try:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine)):
            connection.request("GET", "/")
            connection.getresponse()
    finally:
        connection.close()


def test_a_client_that_never_starts_its_handshake_holds_up_nobody(https: Tls) -> None:
    alice = https.clients.issue_cert("alice@contoso.com")
    silent = [socket.create_connection(("127.0.0.1", https.port), timeout=10) for _ in range(3)]
    try:
        # each handshake runs on its connection's own thread, so three silent clients (each given
        # HANDSHAKE_SECONDS) do not stand between the server's accept and this request
        started = time.monotonic()
        assert https.get("/healthz", alice)[0] == 200
        assert time.monotonic() - started < HANDSHAKE_SECONDS
    finally:
        for connection in silent:
            connection.close()


def test_a_renewal_is_served_to_new_connections_without_a_restart(https: Tls, clock: FrozenClock) -> None:
    alice = https.clients.issue_cert("alice@contoso.com")
    before = https.get("/", alice)[2]
    assert https.tls.refresh() is False  # nothing changed: nothing reloaded

    https.service.issuance.issue_certificate("status", reason="test renewal")
    renewed = https.service.inventory.bundle("status").fingerprint
    assert renewed != before
    assert https.get("/", alice)[2] == before  # not yet: the daemon's job reloads it

    assert https.tls.refresh() is True
    assert https.get("/", alice)[2] == renewed
    assert https.tls.served.revision == https.service.inventory.bundle("status").revision


def test_the_daemon_refuses_to_start_before_its_https_certificate_is_issued(home: Path) -> None:
    ca_file = home / "users-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    config = settings(ca_file)
    config["daemon"]["metrics_address"] = f"0.0.0.0:{free_port()}"
    (home / "certkeeper.toml").write_text(to_toml(config))

    done = run_cli("daemon", timeout=60)

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[daemon] tls_certificate" in lines[0], done.stderr
    # the command the line names does issue it
    hinted = re.search(r"\(certkeeper (renew status --force)\)", lines[0])
    assert hinted is not None, lines[0]
    issued = run_cli(*hinted.group(1).split(), timeout=60)
    assert issued.returncode == 0, issued.stderr
    assert "status: issued revision 1" in issued.stdout + issued.stderr


def test_the_daemon_serves_https_beyond_loopback_with_client_certificates(home: Path, tmp_path: Path) -> None:
    clients = trustme.CA()
    ca_file = home / "users-ca.pem"
    clients.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    config = settings(ca_file)
    # every address: the start is allowed because client certificates guard the page
    config["daemon"]["metrics_address"] = f"0.0.0.0:{port}"
    (home / "certkeeper.toml").write_text(to_toml(config))
    env = certkeeper_env()
    issued = run_cli("issue", SERVER_NAME, env=env)
    assert issued.returncode == 0, issued.stderr
    root = run_cli("ca", "export", "--out", str(tmp_path / "root.pem"), env=env)
    assert root.returncode == 0, root.stderr

    log = tmp_path / "daemon.log"
    daemon = start_certkeeper("daemon", env=env, log=log)
    try:
        root_pem = (tmp_path / "root.pem").read_bytes()
        alice = clients.issue_cert("alice@contoso.com")

        def page() -> tuple[int, str, str] | None:
            if daemon.poll() is not None:
                raise AssertionError(f"the daemon exited: {log.read_text()}")
            try:
                return https_get(port, root_pem, "/", alice)
            except OSError:
                return None

        answer = wait_for(page, timeout=60, what="the daemon's HTTPS page", context=log.read_text)
        assert answer[0] == 200 and SERVER_NAME in answer[1]
        with pytest.raises(REFUSED):
            https_get(port, root_pem, "/")
    finally:
        assert stop_process(daemon) == 0, log.read_text()
    assert f"on https://0.0.0.0:{port}/ (client certificates required)" in log.read_text()


def test_the_key_reaches_ssl_only_encrypted_and_its_files_are_gone(https: Tls, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    seen: list[tuple[Path, bytes]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        seen.append((Path(keyfile), Path(keyfile).read_bytes()))
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    https.service.issuance.issue_certificate("status", reason="test renewal")
    assert https.tls.refresh() is True

    (key_file, key_pem), = seen
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert https.service.inventory.bundle("status").key_pem not in key_pem
    assert not key_file.exists() and not key_file.parent.exists()


def test_an_unreadable_client_ca_file_is_one_clear_line(https: Tls, home: Path) -> None:
    (home / "not-a-ca.pem").write_text("not a certificate\n")
    (home / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    for path in (home / "missing.pem", home / "not-a-ca.pem", home / "broken.pem"):
        with pytest.raises(ConfigError, match=r"\[daemon\] client_ca_file .*: cannot read a CA certificate") as err:
            ServerTls("status", https.service.inventory.bundle, client_ca_file=path)
        assert "\n" not in str(err.value)


def test_a_der_client_ca_as_certutil_exports_it_works_too(https: Tls, home: Path) -> None:
    der_file = home / "users-ca.cer"
    der_file.write_bytes(x509.load_pem_x509_certificate(https.clients.cert_pem.bytes()).public_bytes(
        serialization.Encoding.DER))
    tls = ServerTls("status", https.service.inventory.bundle, client_ca_file=der_file,
                    client_names=("alice@contoso.com",))
    with serving(https.service, tls) as port:
        assert https_get(port, https.root_pem, "/healthz", https.clients.issue_cert("alice@contoso.com"))[0] == 200
        with pytest.raises(REFUSED):
            https_get(port, https.root_pem, "/healthz", trustme.CA().issue_cert("alice@contoso.com"))


def test_chromium_with_a_client_certificate_renders_the_page_and_without_one_gets_nothing(
        https: Tls, chromium: Any, tmp_path: Path) -> None:
    alice = https.clients.issue_cert("alice@contoso.com")
    cert_file, key_file = tmp_path / "alice.pem", tmp_path / "alice.key"
    alice.cert_chain_pems[0].write_to_path(str(cert_file))
    alice.private_key_pem.write_to_path(str(key_file))
    origin = f"https://127.0.0.1:{https.port}"

    # the browser is told to trust any server: the server's own verification is tested above
    context = chromium.new_context(ignore_https_errors=True, client_certificates=[
        {"origin": origin, "certPath": str(cert_file), "keyPath": str(key_file)}])
    try:
        page = context.new_page()
        response = page.goto(origin + "/")
        assert response is not None and response.status == 200
        text = page.inner_text("body")
        assert "status" in text and "mail" in text and SERVER_NAME in text
        assert page.locator("svg").count() >= 1
    finally:
        context.close()

    bare = chromium.new_context(ignore_https_errors=True)
    try:
        # ERR_BAD_SSL_CLIENT_AUTH_CERT, or a reset/closed socket when the alert comes after TLS 1.3's
        # handshake (the same server answered the certificate above)
        with pytest.raises(Exception, match="net::ERR_") as refused:
            bare.new_page().goto(origin + "/")
        print("without a client certificate:", str(refused.value).splitlines()[0])
    finally:
        bare.close()


def test_trusting_only_the_issuing_ca_accepts_its_certificates_and_not_its_siblings(https: Tls, home: Path,
                                                                                     tmp_path: Path) -> None:
    root = trustme.CA()
    users, machines = root.create_child_ca(), root.create_child_ca()
    ca_file = home / "users-issuing-ca.pem"
    users.cert_pem.write_to_path(str(ca_file))  # the issuing CA alone, not its root
    tls = ServerTls("status", https.service.inventory.bundle, client_ca_file=ca_file)

    def leaf_only(ca: trustme.CA) -> trustme.LeafCert:
        """A client that sends its own certificate without the issuing CA (as many do)."""
        leaf = ca.issue_cert("alice@contoso.com")
        leaf.private_key_and_cert_chain_pem = trustme.Blob(leaf.private_key_pem.bytes()
                                                           + leaf.cert_chain_pems[0].bytes())
        return leaf

    with serving(https.service, tls) as port:
        assert https_get(port, https.root_pem, "/healthz", leaf_only(users))[0] == 200
        with pytest.raises(REFUSED):
            https_get(port, https.root_pem, "/healthz", leaf_only(machines))  # same root, other issuing CA
