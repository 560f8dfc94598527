"""Dual-stack listeners: a wildcard address answers on IPv4 and IPv6 loopback; a specific one only there."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from certkeeper.issuers.acme.solvers.http01 import StandaloneHttp01
from tests.fixtures.core import free_port


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as response:
        body: bytes = response.read()
    return body


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_standalone_http01_on_a_wildcard_listens_on_both_families(address: str) -> None:
    port = free_port()
    solver = StandaloneHttp01(address, port)
    solver.present("mail.contoso.com", "tok", "tok.keyauth")
    try:
        for host in ("127.0.0.1", "[::1]"):
            assert get(f"http://{host}:{port}/.well-known/acme-challenge/tok") == b"tok.keyauth"
    finally:
        solver.cleanup("mail.contoso.com", "tok", "tok.keyauth")


def test_standalone_http01_on_loopback_stays_ipv4_loopback() -> None:
    port = free_port()
    solver = StandaloneHttp01("127.0.0.1", port)
    solver.present("mail.contoso.com", "tok", "tok.keyauth")
    try:
        assert get(f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok") == b"tok.keyauth"
        with pytest.raises((urllib.error.URLError, ConnectionError, socket.error)):
            get(f"http://[::1]:{port}/.well-known/acme-challenge/tok")
    finally:
        solver.cleanup("mail.contoso.com", "tok", "tok.keyauth")
