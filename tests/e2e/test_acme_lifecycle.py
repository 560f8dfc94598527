"""AcmeIssuer against Pebble: EAB, badNonce storms, resuming a saved order, ARI and ``replaces``,
revocation."""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certkeeper.clock import FrozenClock, SystemClock
from certkeeper.errors import ConfigError, IssuanceRejected
from certkeeper.issuers.acme.ari import cert_id_from_pem
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.pebble import ChallTestSrv, Pebble, PebbleFactory, make_csr, verify_chain

pytestmark = pytest.mark.e2e


def context(tmp_path: Path, state: MemoryState | None = None, secrets: Mapping[str, str] | None = None
            ) -> PluginContext:
    def resolve(reference: str) -> str:
        return (secrets or {})[reference]

    return PluginContext(clock=SystemClock(), state=state or MemoryState(), data_dir=tmp_path,
                         resolve_secret=resolve)


def options(pebble: Pebble, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "directory": pebble.directory, "contact": ["mailto:admin@contoso.test"], "agree_tos": True,
        "ca_bundle": str(pebble.ca_bundle), "public_names_only": False,  # Pebble: a test CA, .test names
        "http01": {"mode": "standalone", "address": "127.0.0.1", "port": pebble.http_port},
    }
    base.update(extra)
    return base


def request(names: tuple[str, ...], **extra: Any) -> IssueRequest:
    _key, csr = make_csr(names)
    return IssueRequest(certificate_id="test", names=names, csr_pem=csr, **extra)


def orders_placed(pebble: Pebble) -> int:
    return len(re.findall(r"Added order ", pebble.log()))


# -- EAB ---------------------------------------------------------------------------------------


def test_eab_required_and_given_from_file(pebble_eab: tuple[Pebble, str, str], tmp_path: Path) -> None:
    pebble, kid, hmac_key = pebble_eab
    key_file = tmp_path / "eab.key"
    key_file.write_text(hmac_key + "\n")
    issuer = AcmeIssuer.from_options("eab", options(pebble, eab_kid=kid, eab_hmac_key_file=str(key_file)),
                                     context(tmp_path))
    result = issuer.issue(request(("eab.contoso.test",)))
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(), "eab.contoso.test")


def test_eab_from_a_secret_reference(pebble_eab: tuple[Pebble, str, str], tmp_path: Path) -> None:
    pebble, kid, hmac_key = pebble_eab
    issuer = AcmeIssuer.from_options("eab", options(pebble, eab_kid=kid, eab_hmac_key="secret:eab"),
                                     context(tmp_path, secrets={"secret:eab": hmac_key}))
    assert issuer.register()["status"] == "valid"


def test_eab_missing_or_wrong(pebble_eab: tuple[Pebble, str, str], tmp_path: Path) -> None:
    pebble, kid, hmac_key = pebble_eab
    issuer = AcmeIssuer.from_options("eab", options(pebble), context(tmp_path))
    with pytest.raises(ConfigError, match="requires External Account Binding"):
        issuer.register()
    wrong = "A" * len(hmac_key)
    issuer = AcmeIssuer.from_options("eab", options(pebble, eab_kid=kid, eab_hmac_key="secret:eab"),
                                     context(tmp_path, secrets={"secret:eab": wrong}))
    with pytest.raises(IssuanceRejected) as caught:
        issuer.register()
    assert wrong not in str(caught.value) and hmac_key not in str(caught.value)


# -- badNonce ----------------------------------------------------------------------------------


def test_half_of_all_nonces_rejected_still_issues(pebble_noncereject: Pebble, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="certkeeper.issuers.acme.client")
    issuer = AcmeIssuer.from_options("nonce", options(pebble_noncereject), context(tmp_path))
    for index in range(3):
        names = (f"n{index}.contoso.test", f"m{index}.contoso.test")
        result = issuer.issue(request(names))
        verify_chain(result.cert_pem, result.chain_pem, pebble_noncereject.root_pem(), names[0])
    retries = [r for r in caplog.records if r.getMessage().startswith("badNonce, retrying")]
    assert len(retries) >= 5  # about half of ~40 POSTs were refused, and every one was retried


# -- resume ------------------------------------------------------------------------------------


class Crash(Exception):
    pass


def test_resume_finishes_the_saved_order(pebble: Pebble, tmp_path: Path) -> None:
    state = MemoryState()
    saved: dict[str, Any] = {}

    def crash_after_order(data: Mapping[str, Any]) -> None:
        saved.update(data)
        raise Crash()

    names = ("resume.contoso.test", "resume2.contoso.test")
    _key, csr = make_csr(names)
    first = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path, state))
    before = orders_placed(pebble)
    with pytest.raises(Crash):
        first.issue(IssueRequest(certificate_id="c", names=names, csr_pem=csr,
                                 save_checkpoint=crash_after_order))
    assert saved["order_url"] and orders_placed(pebble) == before + 1

    steps: list[str] = []
    second = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path, state))
    result = second.issue(IssueRequest(certificate_id="c", names=names, csr_pem=csr, checkpoint=saved,
                                       progress=steps.append))
    assert result.details["order_url"] == saved["order_url"]
    assert orders_placed(pebble) == before + 1  # that same order, no other
    assert "order (resuming pending order)" in steps
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(), names[0])

    # resuming a finished (valid) order just downloads it again
    again = second.issue(IssueRequest(certificate_id="c", names=names, csr_pem=csr, checkpoint=saved))
    assert again.cert_pem == result.cert_pem and orders_placed(pebble) == before + 1


def test_unknown_saved_order_places_exactly_one_new_order(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    before = orders_placed(pebble)
    lost = {"order_url": f"https://127.0.0.1:{pebble.port}/my-order/doesnotexist",
            "directory": pebble.directory}
    saved: list[Mapping[str, Any]] = []
    result = issuer.issue(request(("lost.contoso.test",), checkpoint=lost, save_checkpoint=saved.append))
    assert orders_placed(pebble) == before + 1
    assert result.details["order_url"] == saved[0]["order_url"] != lost["order_url"]


def test_a_ca_that_forgot_everything(pebble_factory: PebbleFactory, challtestsrv: ChallTestSrv,
                                     tmp_path: Path) -> None:
    """After a CA restart (Pebble keeps nothing) the stored account is unknown: certkeeper
    registers again with the same key, and a saved order that no longer exists is replaced by
    exactly one new order."""
    pebble = pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-restart")
    state = MemoryState()
    issuer = AcmeIssuer.from_options("p", options(pebble), context(tmp_path, state))
    saved: list[Mapping[str, Any]] = []
    first = issuer.issue(request(("forgot.contoso.test",), save_checkpoint=saved.append))
    pebble.restart()
    steps: list[str] = []
    second = issuer.issue(request(("forgot.contoso.test",), checkpoint=saved[0], progress=steps.append))
    assert second.details["account_url"] != first.details["account_url"]
    assert "order" in steps and not any(step.startswith("order (resuming") for step in steps)
    assert orders_placed(pebble) == 2  # one before the restart, one after
    verify_chain(second.cert_pem, second.chain_pem, pebble.root_pem(), "forgot.contoso.test")


# -- ARI and replaces --------------------------------------------------------------------------


def test_ari_window_and_replaces_on_renewal(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    first = issuer.issue(request(("ari.contoso.test",)))
    window = issuer.renewal_info(first.cert_pem, first.chain_pem)
    assert window is not None
    leaf = x509.load_pem_x509_certificate(first.cert_pem)
    assert leaf.not_valid_before_utc <= window.start < window.end <= leaf.not_valid_after_utc
    now = datetime.now(UTC)
    assert now + timedelta(hours=5) < window.retry_after < now + timedelta(hours=7)  # Retry-After: 21600

    second = issuer.issue(request(("ari.contoso.test",), replaces_cert_pem=first.cert_pem,
                                  replaces_chain_pem=first.chain_pem))
    assert second.details["replaces"] == first.details["ari_cert_id"]
    # Pebble 2.6 names the order whose certificate is replaced
    first_order = first.details["order_url"].rsplit("/", 1)[-1]
    second_order = second.details["order_url"].rsplit("/", 1)[-1]
    assert f'ARI: order "{second_order}" is a replacement of "{first_order}"' in pebble.log()


class StubCA:
    """A directory with only renewalInfo, answering what the test sets (Pebble 2.6 cannot be told
    to serve garbage or an HTTP-date Retry-After)."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.retry_after: str | None = None
        self.requests: list[str] = []
        self.busy = 0  # answer this many requests with 503 + Retry-After first
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(self.path)
                if stub.busy and self.path != "/dir":
                    stub.busy -= 1
                    problem = b'{"type": "urn:ietf:params:acme:error:serverInternal", "detail": "busy"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/problem+json")
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(problem)))
                    self.end_headers()
                    self.wfile.write(problem)
                    return
                if self.path == "/dir":
                    body = json.dumps({"renewalInfo": f"http://127.0.0.1:{stub.port}/ari/"}).encode()
                else:
                    body = stub.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if stub.retry_after and self.path != "/dir":
                    self.send_header("Retry-After", stub.retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_ca() -> Iterator[StubCA]:
    stub = StubCA()
    try:
        yield stub
    finally:
        stub.close()


def test_ari_retry_after_forms_garbage_and_expired(pebble: Pebble, stub_ca: StubCA, tmp_path: Path) -> None:
    issued = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path)).issue(
        request(("garbage.contoso.test",)))
    clock = FrozenClock(datetime.now(UTC))
    stub = AcmeIssuer.from_options("stub", {"directory": f"http://127.0.0.1:{stub_ca.port}/dir"},
                                   PluginContext(clock=clock, state=MemoryState(), data_dir=tmp_path))
    start, end = clock.now() + timedelta(days=10), clock.now() + timedelta(days=11)
    stub_ca.body = json.dumps({"suggestedWindow": {"start": start.isoformat(), "end": end.isoformat()},
                               "explanationURL": "https://ca.example/incident"}).encode()
    stub_ca.retry_after = "3600"
    window = stub.renewal_info(issued.cert_pem, issued.chain_pem)
    assert window is not None and window.explanation_url == "https://ca.example/incident"
    assert abs((window.start - start).total_seconds()) < 1
    assert window.retry_after == clock.now() + timedelta(hours=1)
    assert stub_ca.requests[-1] == "/ari/" + cert_id_from_pem(issued.cert_pem)

    stub_ca.busy = 2  # 503 twice, then the answer: retried after Retry-After
    asked = len(stub_ca.requests)
    assert stub.renewal_info(issued.cert_pem, issued.chain_pem) is not None
    assert len(stub_ca.requests) == asked + 3

    stub_ca.retry_after = format_datetime(clock.now() + timedelta(hours=2), usegmt=True)
    window = stub.renewal_info(issued.cert_pem, issued.chain_pem)
    assert window is not None
    # measured against the stub's Date (whole seconds, stamped when it answers): within 2 s
    assert abs((window.retry_after - (clock.now() + timedelta(hours=2))).total_seconds()) <= 2
    stub_ca.retry_after = None
    window = stub.renewal_info(issued.cert_pem, issued.chain_pem)
    assert window is not None and window.retry_after == clock.now() + timedelta(hours=6)

    backwards = {"suggestedWindow": {"start": end.isoformat(), "end": start.isoformat()}}
    for garbage in (b"{not json", b"[]", b'{"suggestedWindow": {"start": "yesterday"}}',
                    json.dumps(backwards).encode()):
        stub_ca.body = garbage
        assert stub.renewal_info(issued.cert_pem, issued.chain_pem) is None
    assert stub.renewal_info(b"not a certificate", b"") is None

    # an expired certificate is never asked about (RFC 9773 §4.3)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    clock.set(leaf.not_valid_after_utc + timedelta(seconds=1))
    asked = len(stub_ca.requests)
    assert stub.renewal_info(issued.cert_pem, issued.chain_pem) is None
    assert len(stub_ca.requests) == asked


# -- revocation --------------------------------------------------------------------------------


def test_revoke_with_account_and_with_certificate_key(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    names = ("revoke.contoso.test",)
    key_pem, csr = make_csr(names)
    issued = issuer.issue(IssueRequest(certificate_id="r", names=names, csr_pem=csr))
    serial = x509.load_pem_x509_certificate(issued.cert_pem).serial_number
    issuer.revoke(issued.cert_pem, key_pem, 4)  # superseded
    assert pebble.cert_status(serial)["Status"] == "Revoked"
    issuer.revoke(issued.cert_pem, key_pem, 4)  # already revoked: fine

    # another account (other contact) may not revoke it; the certificate's own key may
    issued2 = issuer.issue(IssueRequest(certificate_id="r", names=names, csr_pem=csr))
    other = AcmeIssuer.from_options("pebble", options(pebble, contact=["mailto:x@contoso.test"]),
                                    context(tmp_path))
    with pytest.raises(IssuanceRejected, match="unauthorized"):
        other.revoke(issued2.cert_pem, None, 1)
    other.revoke(issued2.cert_pem, key_pem, 1)
    serial2 = x509.load_pem_x509_certificate(issued2.cert_pem).serial_number
    assert pebble.cert_status(serial2)["Status"] == "Revoked"


# -- preferred chain and Retry-After while polling ---------------------------------------------


def test_preferred_chain_picks_the_alternate_root(pebble_factory: PebbleFactory, challtestsrv: ChallTestSrv,
                                                 tmp_path: Path) -> None:
    pebble = pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-alt",
                                  env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    alternate_root = x509.load_pem_x509_certificate(pebble.root_pem(1))
    wanted = alternate_root.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    default_root = x509.load_pem_x509_certificate(pebble.root_pem(0))
    plain = AcmeIssuer.from_options("p", options(pebble), context(tmp_path)).issue(request(("chain.contoso.test",)))
    top = x509.load_pem_x509_certificates(plain.chain_pem)[-1]
    assert top.issuer == default_root.subject
    preferred = AcmeIssuer.from_options("p", options(pebble, preferred_chain=wanted), context(tmp_path))
    result = preferred.issue(request(("chain.contoso.test",)))
    top = x509.load_pem_x509_certificates(result.chain_pem)[-1]
    assert top.issuer == alternate_root.subject
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(1), "chain.contoso.test")


def test_polling_honours_the_cas_retry_after(pebble_factory: PebbleFactory, challtestsrv: ChallTestSrv,
                                            tmp_path: Path) -> None:
    """Pebble's retryAfter sends Retry-After on pending authorizations and orders, at random as
    delta-seconds or an HTTP date: certkeeper waits that long instead of polling every 25 ms."""
    # validation takes a random 0-3 s here (not instant), so the first poll finds the authorization
    # pending and Pebble's Retry-After is what paces the next one
    pebble = pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-retry",
                                  config={"retryAfter": {"authz": 3, "order": 3}},
                                  env={"PEBBLE_VA_NOSLEEP": "0", "PEBBLE_VA_SLEEPTIME": "3"})
    issuer = AcmeIssuer.from_options("p", options(pebble), context(tmp_path))
    issuer.register()
    for attempt in range(4):
        before = pebble.log().count("POST /authZ/")
        start = time.monotonic()
        issuer.issue(request((f"slow{attempt}.contoso.test",)))
        elapsed = time.monotonic() - start
        polls = pebble.log().count("POST /authZ/") - before
        assert polls <= 5
        # one fetch, then the polls: three or more requests mean a poll found it pending
        if polls >= 3:
            # 3 s as delta-seconds, 2-3 s as an HTTP date (whole seconds); 0.1 s if ignored
            assert 1.5 < elapsed < 15
            return
    raise AssertionError("Pebble never answered an authorization poll with 'pending' in four orders")
