"""Retry-After and the CA's clock, through the whole ACME issuer, against a small loopback CA whose
clock is an hour behind ours (Pebble's clock is this machine's, so it cannot show this):

- the Retry-After of the finalize response (order ``processing``) is waited for before the first
  poll, and its HTTP-date is measured against the response's ``Date``, not our clock;
- a Retry-After of 0 never makes polling faster than the normal poll back-off;
- a CA clock more than five minutes from ours is reported in one warning naming both times.

The stub does not check signatures (that is Pebble's job in the other tests); it answers just
enough of RFC 8555 for one order whose authorizations are already valid.
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkeeper.clock import SystemClock
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.pebble import make_csr

pytestmark = pytest.mark.e2e

SKEW = timedelta(hours=-1)  # the stub CA's clock is an hour behind ours


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SkewedCA:
    """An ACME CA on loopback whose ``Date`` header is ``SKEW`` off, recording request times."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Skewed Test CA")])
        #: what the finalize answer carries as Retry-After (None: no header); {date} is its Date
        self.finalize_retry_after: str | None = None
        #: what order polls answer while processing, and for how long the order stays processing
        self.poll_retry_after: str | None = None
        self.processing_seconds = 0.0
        self.finalized_at: float | None = None
        self.polls: list[float] = []  # monotonic times of order polls after finalize
        self.certificates: dict[str, bytes] = {}
        counter = itertools.count()
        ca = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def date_time_string(self, timestamp: float | None = None) -> str:
                return format_datetime(ca.server_now(), usegmt=True)

            def _reply(self, status: int, body: bytes, kind: str = "application/json",
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Replay-Nonce", f"nonce{next(counter):07d}")
                self.send_header("Content-Type", kind)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._reply(200, b"")

            def do_GET(self) -> None:
                base = ca.url
                directory = {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account",
                             "newOrder": f"{base}/order", "revokeCert": f"{base}/revoke", "meta": {}}
                self._reply(200, json.dumps(directory).encode())

            def do_POST(self) -> None:
                jws = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                payload = json.loads(_b64decode(jws["payload"])) if jws["payload"] else None
                if self.path == "/account":
                    self._reply(201, json.dumps({"status": "valid"}).encode(),
                                headers={"Location": f"{ca.url}/account/1"})
                elif self.path == "/order":
                    ca.names = [identifier["value"] for identifier in payload["identifiers"]]
                    self._reply(201, ca.order("ready"), headers={"Location": f"{ca.url}/order/1"})
                elif self.path == "/order/1/finalize":
                    ca.finalized_at = time.monotonic()
                    ca.issue(_b64decode(payload["csr"]))
                    headers = {}
                    if ca.finalize_retry_after is not None:
                        headers["Retry-After"] = ca.finalize_retry_after
                    self._reply(200, ca.order("processing"), headers=headers)
                elif self.path == "/order/1":
                    ca.polls.append(time.monotonic())
                    assert ca.finalized_at is not None
                    if time.monotonic() - ca.finalized_at < ca.processing_seconds:
                        headers = {"Retry-After": ca.poll_retry_after} if ca.poll_retry_after else {}
                        self._reply(200, ca.order("processing"), headers=headers)
                    else:
                        self._reply(200, ca.order("valid"))
                elif self.path == "/cert/1":
                    self._reply(200, ca.certificates["1"], kind="application/pem-certificate-chain")
                else:
                    self._reply(404, b'{"type": "urn:ietf:params:acme:error:malformed"}',
                                kind="application/problem+json")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.names: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def server_now(self) -> datetime:
        return datetime.now(UTC) + SKEW

    def order(self, status: str) -> bytes:
        body: dict[str, Any] = {
            "status": status, "identifiers": [{"type": "dns", "value": name} for name in self.names],
            "authorizations": [], "finalize": f"{self.url}/order/1/finalize"}
        if status == "valid":
            body["certificate"] = f"{self.url}/cert/1"
        return json.dumps(body).encode()

    def issue(self, csr_der: bytes) -> None:
        csr = x509.load_der_x509_csr(csr_der)
        now = datetime.now(UTC)
        root = (x509.CertificateBuilder().subject_name(self.ca_name).issuer_name(self.ca_name)
                .public_key(self.ca_key.public_key()).serial_number(1)
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.ca_key, hashes.SHA256()))
        leaf = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.ca_name)
                .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(hours=2)).not_valid_after(now + timedelta(days=7))
                .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        self.certificates["1"] = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (leaf, root))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def skewed_ca() -> Iterator[SkewedCA]:
    ca = SkewedCA()
    try:
        yield ca
    finally:
        ca.close()


def issuer_for(ca: SkewedCA, tmp_path: Path) -> AcmeIssuer:
    return AcmeIssuer.from_options(
        "skewed", {"directory": f"{ca.url}/dir", "agree_tos": True, "public_names_only": False},
        PluginContext(clock=SystemClock(), state=MemoryState(), data_dir=tmp_path))


def issue(issuer: AcmeIssuer, name: str) -> None:
    _key, csr = make_csr((name,))
    issuer.issue(IssueRequest(certificate_id="clock", names=(name,), csr_pem=csr))


def test_finalize_retry_after_is_measured_against_the_cas_date(skewed_ca: SkewedCA, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="certkeeper.issuers.acme.client")
    # "retry at the CA's now + 2 s": an hour in the past on our clock, so a client reading it
    # against its own clock would poll at once
    skewed_ca.finalize_retry_after = format_datetime(skewed_ca.server_now() + timedelta(seconds=2), usegmt=True)
    skewed_ca.processing_seconds = 0.0
    issuer = issuer_for(skewed_ca, tmp_path)
    issue(issuer, "clock.contoso.test")

    assert skewed_ca.finalized_at is not None and skewed_ca.polls
    # whole seconds in HTTP dates: at least 1 s (the header's second may have begun just before)
    assert skewed_ca.polls[0] - skewed_ca.finalized_at >= 1.0

    # the same issuer again: still one warning, naming the CA's time and ours
    skewed_ca.finalize_retry_after = "0"
    skewed_ca.polls.clear()
    issue(issuer, "clock2.contoso.test")
    warnings = [record.getMessage() for record in caplog.records if "clock of the ACME server" in record.getMessage()]
    assert len(warnings) == 1, warnings
    ours, theirs = datetime.now(UTC), skewed_ca.server_now()
    assert f"{theirs:%Y-%m-%d} " in warnings[0] and f"{ours:%Y-%m-%d} " in warnings[0]
    assert f"{theirs:%H}:" in warnings[0] and f"{ours:%H}:" in warnings[0] and "60 minutes" in warnings[0]


def test_a_zero_retry_after_never_polls_faster_than_the_back_off(skewed_ca: SkewedCA, tmp_path: Path) -> None:
    skewed_ca.poll_retry_after = "0"
    skewed_ca.processing_seconds = 1.0
    issue(issuer_for(skewed_ca, tmp_path), "floor.contoso.test")
    # the back-off (25 ms growing by 1.6) needs about 8 polls to cover one second; "Retry-After: 0"
    # taken literally polls hundreds of times. A loaded machine polls less often, never more.
    assert 2 <= len(skewed_ca.polls) <= 12, len(skewed_ca.polls)
