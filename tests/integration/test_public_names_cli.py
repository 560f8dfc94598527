"""Names no public CA can validate are refused before any order, and the refusal names the rule:
``certkeeper issue`` against an ACME issuer that is a public CA never opens a connection to it.

The issuer's directory is a loopback listener that records every connection (it is judged private
by its address, so ``public_names_only = true`` says it stands for a public CA)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certkeeper.issuers.acme.options import AcmeOptions, directory_is_public


class Listener:
    """A TCP listener on loopback that counts connections and closes them at once."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def write_config(home: Path, port: int, public: bool | None) -> None:
    line = "" if public is None else f"public_names_only = {'true' if public else 'false'}\n"
    (home / "certkeeper.toml").write_text(f"""
[issuers.le]
type = "acme"
directory = "https://127.0.0.1:{port}/directory"
agree_tos = true
{line}""")


@pytest.mark.parametrize(("names", "rule"), [
    (("mail.contoso.onion",), "special-use"),
    (("mail.contoso.com", "autodiscover.contoso.test"), "special-use"),
    (("exch01.contoso.local",), "special-use"),
    (("mail.contoso.comm",), "tld-typo"),
    (("https://mail.contoso.com",), "url"),
    (("exch01",), "single-label"),
])
def test_a_public_acme_issuer_refuses_before_any_request(ck, home: Path, listener: Listener,  # type: ignore[no-untyped-def]
                                                         names: tuple[str, ...], rule: str) -> None:
    write_config(home, listener.port, public=True)
    result = ck("issue", *names, "--issuer", "le")
    assert result.code == 1, result
    assert f"[rule: {rule}]" in result.err
    assert "Traceback" not in result.err
    assert listener.connections == 0  # no network request at all: not even the directory


def test_the_same_names_go_to_a_private_acme_server(ck, home: Path, listener: Listener) -> None:  # type: ignore[no-untyped-def]
    """With public_names_only = false the name passes, so the issuer does reach the CA (which
    here is a listener that hangs up): proof that the listener would have seen a request."""
    write_config(home, listener.port, public=False)
    result = ck("issue", "mail.contoso.onion", "--issuer", "le")
    assert result.code == 1, result
    assert "rule:" not in result.err
    assert listener.connections >= 1


@pytest.mark.parametrize(("directory", "public"), [
    ("letsencrypt", True),
    ("letsencrypt-staging", True),
    ("https://acme.zerossl.com/v2/DV90", True),
    ("https://dv.acme-v02.api.pki.goog/directory", True),
    ("https://api.buypass.com/acme/directory", True),
    ("https://acme.ssl.com/sslcom-dv-rsa", True),
    ("https://acme.sectigo.com/v2/DV", True),
    ("https://acme.digicert.com/v2/acme/directory/", True),
    # an ACME server on a public name we do not know: public, the safe side (set it false if not)
    ("https://acme.example-ca.eu/directory", True),
    # private: step-ca, loopback and private addresses, internal and special-use host names
    ("https://ca.contoso.com/acme/acme/directory", False),
    ("https://ca.contoso.com:9000/acme/exchange/directory", False),
    ("https://127.0.0.1:14000/dir", False),
    ("https://localhost:14000/dir", False),
    ("https://[::1]:14000/dir", False),
    ("https://10.0.0.5/acme/directory", False),
    ("https://ca.contoso.local/directory", False),
    ("https://ca.contoso.corp/directory", False),
    ("https://ca/directory", False),
    ("https://pebble.test:14000/dir", False),
])
def test_directory_decides_whether_an_acme_issuer_is_public(directory: str, public: bool) -> None:
    options = AcmeOptions(directory=directory)
    assert options.is_public is public
    assert directory_is_public(options.directory) is public
    # the option overrides the guess either way
    assert AcmeOptions(directory=directory, public_names_only=not public).is_public is (not public)
