"""The protocol seam over real HTTP against a scripted server: badNonce storms are retried with
the nonce from the error response, 429/503 wait for Retry-After within the deadline."""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from certkeeper.clock import SystemClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.client import Deadline, Network
from certkeeper.issuers.acme.problems import translate


class Scripted:
    """Answers POST /thing from ``script`` (status, problem type or None, headers), then 200."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str | None, dict[str, str]]] = []
        self.nonces_seen: list[str] = []
        self.heads = 0
        counter = itertools.count()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, status: int, body: bytes, headers: dict[str, str], kind: str) -> None:
                self.send_response(status)
                nonce = base64.urlsafe_b64encode(f"nonce-{next(counter):06d}".encode()).decode().rstrip("=")
                self.send_header("Replay-Nonce", nonce)
                self.send_header("Content-Type", kind)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                server.heads += 1
                self._reply(200, b"", {}, "text/plain")

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                protected = json.loads(_b64decode(request["protected"]))
                server.nonces_seen.append(protected["nonce"])
                if server.script:
                    status, problem, headers = server.script.pop(0)
                    if problem:
                        body = json.dumps({"type": f"urn:ietf:params:acme:error:{problem}", "detail": "x"})
                        self._reply(status, body.encode(), headers, "application/problem+json")
                    else:
                        self._reply(status, b"<html>busy</html>", headers, "text/html")
                    return
                self._reply(200, b'{"ok": true}', {}, "application/json")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    try:
        yield server
    finally:
        server.close()


def network(seconds: float = 30) -> Network:
    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    return Network(key, alg=ES256, verify=True, timeout=5, deadline=Deadline(seconds, SystemClock()),
                   account_url="http://127.0.0.1/acct/1")


def test_bad_nonce_storm_uses_the_fresh_nonce_each_time(scripted: Scripted) -> None:
    scripted.script = [(400, "badNonce", {})] * 8
    net = network()
    response = net.post(scripted.url + "/thing", None, new_nonce_url=scripted.url + "/nonce")
    assert response.json() == {"ok": True}
    assert len(scripted.nonces_seen) == 9 and len(set(scripted.nonces_seen)) == 9
    assert scripted.heads == 1  # only the very first nonce came from newNonce


def test_too_many_bad_nonces_give_up(scripted: Scripted) -> None:
    scripted.script = [(400, "badNonce", {})] * 20
    with pytest.raises(messages.Error):
        network().post(scripted.url + "/thing", None, new_nonce_url=scripted.url + "/nonce")
    assert len(scripted.nonces_seen) == 13  # the first try and 12 retries


def test_rate_limited_waits_for_retry_after_in_both_forms(scripted: Scripted) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    scripted.script = [(429, "rateLimited", {"Retry-After": "1"}),
                       (503, None, {"Retry-After": format_datetime(when, usegmt=True)})]
    start = time.monotonic()
    response = network().post(scripted.url + "/thing", None, new_nonce_url=scripted.url + "/nonce")
    elapsed = time.monotonic() - start
    assert response.json() == {"ok": True}
    assert len(scripted.nonces_seen) == 3
    assert 1.9 < elapsed < 6  # 1 s, then until the HTTP date (1-2 s more); room for a loaded machine


def test_retry_after_beyond_the_deadline_is_reported(scripted: Scripted) -> None:
    scripted.script = [(429, "rateLimited", {"Retry-After": "3600"})]
    start = time.monotonic()
    with pytest.raises(messages.Error) as caught:
        network(seconds=5).post(scripted.url + "/thing", None, new_nonce_url=scripted.url + "/nonce")
    assert time.monotonic() - start < 2
    error = translate(caught.value, retry_after=getattr(caught.value, "retry_after_at", None))
    assert isinstance(error, IssuanceError) and error.retryable
    assert error.retry_after is not None
    assert timedelta(minutes=59) < error.retry_after - datetime.now(UTC) < timedelta(minutes=61)
