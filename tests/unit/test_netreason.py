"""netreason: the cause of a failed request in a few words, from real failures on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import requests
import trustme

from certkeeper.netreason import reason
from tests.fixtures.core import free_port


def _failure(url: str, **kwargs: object) -> BaseException:
    with pytest.raises(requests.RequestException) as caught:
        requests.get(url, timeout=kwargs.pop("timeout", 2), **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture
def untrusted_tls() -> Iterator[int]:
    """A TLS server with a certificate from a CA nobody trusts."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_connection_refused() -> None:
    assert reason(_failure(f"https://127.0.0.1:{free_port()}/dir")) == "connection refused"


def test_timed_out(silent_server: int) -> None:
    assert reason(_failure(f"https://127.0.0.1:{silent_server}/dir", timeout=0.3)) == "timed out"


def test_name_does_not_resolve() -> None:
    # built as requests builds it (no lookup here: the tests never query a DNS server off loopback)
    from urllib3.connection import HTTPSConnection
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    lookup = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    resolution = NameResolutionError("ca.contoso.invalid", HTTPSConnection("ca.contoso.invalid"), lookup)
    resolution.__cause__ = lookup
    wrapped = requests.ConnectionError(MaxRetryError(None, "/dir", resolution))  # type: ignore[arg-type]
    assert reason(wrapped) == "the host name does not resolve"


def test_untrusted_certificate(untrusted_tls: int) -> None:
    text = reason(_failure(f"https://127.0.0.1:{untrusted_tls}/dir"))
    assert text.startswith("its TLS certificate is not trusted (") and "issuer" in text


def test_anything_else_is_its_first_line_without_a_traceback() -> None:
    assert reason(ValueError("bad\nmore")) == "bad"
    assert reason(RuntimeError()) == "RuntimeError"
