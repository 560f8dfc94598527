"""The AD CS issuer against the certsrv protocol double (tests/fixtures/certsrv.py), not a Windows CA."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certkeeper.clock import FrozenClock, SystemClock
from certkeeper.config import parse
from certkeeper.daemon import Daemon
from certkeeper.errors import (
    ConfigError,
    IssuanceError,
    IssuancePending,
    IssuanceRejected,
)
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers import Issuer, load_issuer
from certkeeper.issuers.adcs import AdcsIssuer, parse_submission
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from certkeeper.service import Service
from tests.fixtures.certsrv import AD_NAME, PASSWORD, CertsrvDouble

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def make_csr(names: tuple[str, ...] = NAMES, *, eku: list[x509.ObjectIdentifier] | None = None
             ) -> tuple[bytes, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key


class Checkpoints:
    """What the service would persist between calls (and across restarts)."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def __call__(self, data: Mapping[str, Any]) -> None:
        self.saved.append(dict(data))

    @property
    def last(self) -> dict[str, Any] | None:
        return self.saved[-1] if self.saved else None


def request_for(csr_pem: bytes, checkpoints: Checkpoints | None = None,
                checkpoint: Mapping[str, Any] | None = None, names: tuple[str, ...] = NAMES) -> IssueRequest:
    return IssueRequest(certificate_id="exchange", names=names, csr_pem=csr_pem, checkpoint=checkpoint,
                        save_checkpoint=checkpoints or Checkpoints())


@pytest.fixture
def context(tmp_path: Path, clock: FrozenClock) -> PluginContext:
    secrets = {"secret:adcs": PASSWORD}
    return PluginContext(clock=clock, state=MemoryState(), data_dir=tmp_path,
                         resolve_secret=lambda ref: secrets.get(ref, ref))


def issuer_for(double: CertsrvDouble, context: PluginContext, **overrides: Any) -> AdcsIssuer:
    cls = load_issuer("adcs")
    issuer: AdcsIssuer = cls.from_options("corp", double.options(**overrides), context)
    return issuer


def verify_chain(cert_pem: bytes, chain_pem: bytes, root_pem: bytes, name: str) -> None:
    leaf = x509.load_pem_x509_certificate(cert_pem)
    store = Store(x509.load_pem_x509_certificates(root_pem))
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    intermediates = x509.load_pem_x509_certificates(chain_pem) if chain_pem else []
    verifier.verify(leaf, intermediates)


@pytest.mark.parametrize("auth", ["basic", "ntlm", "negotiate", "certificate"])
def test_issue_chain_verifies_against_the_ca_root(certsrv_factory: Any, context: PluginContext,
                                                   auth: str) -> None:
    double: CertsrvDouble = certsrv_factory(auth)
    issuer = issuer_for(double, context)
    assert isinstance(issuer, Issuer) and issuer.name_policy is NamePolicy.PRIVATE
    csr_pem, key = make_csr()
    checkpoints = Checkpoints()

    result = issuer.issue(request_for(csr_pem, checkpoints))

    for name in NAMES:
        verify_chain(result.cert_pem, result.chain_pem, double.ca.root_pem, name)
    leaf = x509.load_pem_x509_certificate(result.cert_pem)
    assert leaf.public_key() == key.public_key()
    # the chain holds the issuing CA, not the root; the root comes from trust_anchors_pem
    assert x509.load_pem_x509_certificates(result.chain_pem) == [double.ca.issuing]
    assert issuer.trust_anchors_pem() == double.ca.root_pem
    assert "warning" not in result.details
    (record,) = double.requests.values()
    assert result.details["request_id"] == record.request_id
    assert record.auth_scheme == {"basic": "basic", "ntlm": "NTLM", "negotiate": "Negotiate",
                                  "certificate": "certificate"}[auth]
    # the request ID was saved before the certificate was fetched: a crash there polls, not resubmits
    assert checkpoints.last is not None and checkpoints.last["request_id"] == record.request_id


def test_form_carries_template_only_never_san_attributes(certsrv: CertsrvDouble,
                                                         context: PluginContext) -> None:
    issuer = issuer_for(certsrv, context)
    csr_pem, _ = make_csr()
    issuer.issue(request_for(csr_pem))

    (form,) = certsrv.submissions
    assert form["Mode"] == "newreq"
    assert form["CertAttrib"] == "CertificateTemplate:WebServer\r\n"
    assert "san:" not in form["CertAttrib"].lower()
    assert form["CertRequest"].encode() == csr_pem
    assert form["TargetStoreFlags"] == "0" and form["SaveCert"] == "yes"
    assert form["FriendlyType"]


def test_template_cannot_smuggle_attributes(certsrv: CertsrvDouble, context: PluginContext) -> None:
    with pytest.raises(ConfigError, match=r"issuers\.corp\.template"):
        issuer_for(certsrv, context, template="WebServer\r\nsan:dns=dc01.corp.contoso.com")


def test_pending_then_approved_through_the_checkpoint(certsrv: CertsrvDouble, context: PluginContext,
                                                     clock: FrozenClock) -> None:
    certsrv.mode = "pending"
    issuer = issuer_for(certsrv, context, poll_minutes=15)
    csr_pem, _ = make_csr()
    checkpoints = Checkpoints()

    with pytest.raises(IssuancePending) as pending:
        issuer.issue(request_for(csr_pem, checkpoints))
    (record,) = certsrv.requests.values()
    assert pending.value.checkpoint["request_id"] == record.request_id
    assert checkpoints.last == pending.value.checkpoint
    assert pending.value.retry_after == clock.now() + timedelta(minutes=15)
    assert str(record.request_id) in str(pending.value)

    # polled again before approval: still pending, nothing submitted again
    clock.advance(timedelta(minutes=15))
    with pytest.raises(IssuancePending):
        issuer.issue(request_for(csr_pem, checkpoint=checkpoints.last))
    assert len(certsrv.submissions) == 1 and certsrv.polls == [record.request_id]

    certsrv.approve(record.request_id)
    # a new issuer instance, as after a daemon restart, continues from the stored checkpoint
    restarted = issuer_for(certsrv, context)
    result = restarted.issue(request_for(csr_pem, checkpoint=checkpoints.last))
    assert len(certsrv.submissions) == 1
    verify_chain(result.cert_pem, result.chain_pem, certsrv.ca.root_pem, NAMES[0])
    assert result.details["request_id"] == record.request_id


def test_denied_carries_the_ca_message(certsrv: CertsrvDouble, context: PluginContext) -> None:
    certsrv.mode = "deny"
    certsrv.deny_message = "Denied by Policy Module  Requests for contoso.com need a change ticket."
    issuer = issuer_for(certsrv, context)
    with pytest.raises(IssuanceRejected) as denied:
        issuer.issue(request_for(make_csr()[0]))
    assert denied.value.problem == certsrv.deny_message
    assert not denied.value.retryable


def test_pending_then_denied_by_manager(certsrv: CertsrvDouble, context: PluginContext) -> None:
    certsrv.mode = "pending"
    issuer = issuer_for(certsrv, context)
    csr_pem, _ = make_csr()
    checkpoints = Checkpoints()
    with pytest.raises(IssuancePending):
        issuer.issue(request_for(csr_pem, checkpoints))
    certsrv.deny(message="Not for this server")
    with pytest.raises(IssuanceRejected) as denied:
        issuer.issue(request_for(csr_pem, checkpoints, checkpoint=checkpoints.last))
    assert denied.value.problem is not None and "Not for this server" in denied.value.problem
    assert checkpoints.last == {}  # cleared: a later attempt submits afresh


def test_wrong_template_is_rejected_with_the_ca_text(certsrv: CertsrvDouble, context: PluginContext) -> None:
    issuer = issuer_for(certsrv, context, template="WebServer2")
    with pytest.raises(IssuanceRejected) as rejected:
        issuer.issue(request_for(make_csr()[0]))
    assert rejected.value.problem is not None
    assert "0x80094800" in rejected.value.problem and "WebServer2" in rejected.value.problem


@pytest.mark.parametrize("auth", ["basic", "ntlm", "negotiate"])
def test_wrong_password_is_rejected_not_retried(certsrv_factory: Any, context: PluginContext,
                                                tmp_path: Path, auth: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    double: CertsrvDouble = certsrv_factory(auth)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    issuer = issuer_for(double, context, password_file=str(wrong))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IssuanceRejected) as rejected:
        issuer.issue(request_for(make_csr()[0]))
    assert "401" in str(rejected.value) and not rejected.value.retryable
    assert double.auth_failures == 1  # one attempt, no hammering of the account
    assert double.submissions == []
    assert "not-the-password" not in caplog.text and "Authorization" not in caplog.text


def test_password_from_secret_reference(certsrv_factory: Any, context: PluginContext) -> None:
    double: CertsrvDouble = certsrv_factory("ntlm")
    options = double.options(password="secret:adcs")
    del options["password_file"]
    issuer = AdcsIssuer.from_options("corp", options, context)
    issuer.issue(request_for(make_csr()[0]))
    assert len(double.submissions) == 1


def test_ntlm_is_bound_to_the_tls_channel(certsrv_factory: Any, context: PluginContext) -> None:
    """The double enforces channel binding like IIS Extended Protection: a binding to another
    server certificate (a relay) is refused."""
    double: CertsrvDouble = certsrv_factory("ntlm")
    double.channel_binding = b"tls-server-end-point:" + b"\x00" * 32
    with pytest.raises(IssuanceRejected, match="401"):
        issuer_for(double, context).issue(request_for(make_csr()[0]))


def test_http_refused_unless_allowed(certsrv: CertsrvDouble, context: PluginContext) -> None:
    http_url = certsrv.url.replace("https://", "http://")
    with pytest.raises(ConfigError, match=r"issuers\.corp: url: plain http"):
        issuer_for(certsrv, context, url=http_url)
    issuer = issuer_for(certsrv, context, url=http_url, allow_http=True)
    assert issuer.url == http_url


def test_tls_to_the_ca_is_verified_with_ca_bundle(certsrv: CertsrvDouble, context: PluginContext,
                                                  tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(other))
    issuer = issuer_for(certsrv, context, ca_bundle=str(other))
    with pytest.raises(IssuanceError, match="TLS") as failed:
        issuer.issue(request_for(make_csr()[0]))
    assert failed.value.retryable and certsrv.submissions == []


def test_unreachable_ca_is_retryable(context: PluginContext, tmp_path: Path) -> None:
    from tests.fixtures.core import free_port

    issuer = AdcsIssuer.from_options("corp", {
        "url": f"https://127.0.0.1:{free_port()}/certsrv", "template": "WebServer", "auth": "basic",
        "username": "u", "password": "literal", "connect_timeout_seconds": 2}, context)
    with pytest.raises(IssuanceError) as failed:
        issuer.issue(request_for(make_csr()[0]))
    assert failed.value.retryable and not isinstance(failed.value, IssuanceRejected)


def test_server_error_is_retryable(certsrv: CertsrvDouble, context: PluginContext) -> None:
    certsrv.unavailable["certfnsh.asp"] = 1
    with pytest.raises(IssuanceError, match="503") as failed:
        issuer_for(certsrv, context).issue(request_for(make_csr()[0]))
    assert failed.value.retryable and not isinstance(failed.value, IssuanceRejected)
    assert certsrv.submissions == []


def test_download_failure_after_issuance_polls_instead_of_resubmitting(certsrv: CertsrvDouble,
                                                                      context: PluginContext) -> None:
    certsrv.unavailable["certnew.cer"] = 1
    issuer = issuer_for(certsrv, context)
    csr_pem, _ = make_csr()
    checkpoints = Checkpoints()
    with pytest.raises(IssuanceError, match="503"):
        issuer.issue(request_for(csr_pem, checkpoints))
    assert checkpoints.last is not None
    result = issuer.issue(request_for(csr_pem, checkpoint=checkpoints.last))
    assert len(certsrv.submissions) == 1
    verify_chain(result.cert_pem, result.chain_pem, certsrv.ca.root_pem, NAMES[0])


def test_san_mismatch_warns(certsrv: CertsrvDouble, context: PluginContext,
                            caplog: pytest.LogCaptureFixture) -> None:
    issuer = issuer_for(certsrv, context, template="ADSubject")
    with caplog.at_level(logging.WARNING, logger="certkeeper.issuers.adcs"):
        result = issuer.issue(request_for(make_csr()[0]))
    warning = result.details["warning"]
    assert "mail.contoso.com" in warning and AD_NAME in warning and "ADSubject" in warning
    assert any("ignored the CSR's names" in record.message for record in caplog.records)


def test_client_auth_csr_is_refused_before_sending(certsrv: CertsrvDouble, context: PluginContext) -> None:
    csr_pem, _ = make_csr(eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(IssuanceRejected, match="client authentication"):
        issuer_for(certsrv, context).issue(request_for(csr_pem))
    assert certsrv.submissions == []


@pytest.mark.parametrize(("options", "message"), [
    ({"auth": "ntlm", "username": None}, "needs username and password"),
    ({"auth": "certificate", "client_cert": None}, "needs client_cert and client_key"),
    ({"password": "env:X"}, "not both"),
    ({"url": "ftp://ca01/certsrv"}, "url"),
    ({"ca_bundle": "/nonexistent/ca.pem"}, r"issuers\.corp\.ca_bundle"),
    ({"colour": "blue"}, r"issuers\.corp\.colour"),
])
def test_options_errors_name_the_key(certsrv: CertsrvDouble, context: PluginContext,
                                     options: dict[str, Any], message: str) -> None:
    merged = {key: value for key, value in certsrv.options(**options).items() if value is not None}
    with pytest.raises(ConfigError, match=message):
        AdcsIssuer.from_options("corp", merged, context)


def test_trust_anchors_from_configured_root(certsrv: CertsrvDouble, context: PluginContext,
                                            tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(certsrv.ca.root_pem)
    assert issuer_for(certsrv, context, root=str(root)).trust_anchors_pem() == certsrv.ca.root_pem
    # without one, fetched from certnew.p7b before anything was issued
    assert issuer_for(certsrv, context).trust_anchors_pem() == certsrv.ca.root_pem


def test_parse_submission_error_page_variant() -> None:
    """certsrv's generic failure page (no disposition) still yields the CA's words."""
    page = ("<P> Your request failed. An error occurred while the server was processing your request."
            "<P><B>Request Mode:</B> newreq - New Request<BR><B>Disposition:</B> (never set)"
            "<BR><B>Result:</B> The requested certificate template is not supported by this CA. "
            "0x80094800 (-2146875392 CERTSRV_E_UNSUPPORTED_CERT_TYPE)")
    submission = parse_submission(page)
    assert submission.outcome == "denied"
    assert submission.message.startswith("The requested certificate template is not supported by this CA")


def test_a_restarted_daemon_keeps_waiting_for_approval_then_completes(tmp_path: Path, certsrv_factory: Any) -> None:
    """The daemon's jobs on a FrozenClock: a pending request is polled every poll_minutes, never
    submitted again, and a new daemon (knowing only the store) collects it once approved."""
    double: CertsrvDouble = certsrv_factory("ntlm")
    double.mode = "pending"
    config = parse({
        "issuers": {"corp": {"type": "adcs", **double.options(poll_minutes=30)}},
        "certificates": [{"id": "exchange", "issuer": "corp", "names": list(NAMES)}],
        "daemon": {"metrics_address": ""},
    }, data_dir=tmp_path / "data")
    clock = FrozenClock(SystemClock().now())  # the double's certificates carry real times
    Service.open(config, clock=clock).close()  # the store exists before the daemon starts

    first = Daemon(config, node="cas01", clock=clock)
    try:
        first.heartbeat()
        first.reconcile()
        (record,) = double.requests.values()
        assert record.state == "pending" and double.polls == []
        first.reconcile()  # the next pass, 1.2 s later or at once: not time to ask again
        clock.advance(timedelta(minutes=29))
        first.reconcile()
        assert double.polls == []
        clock.advance(timedelta(minutes=2))
        first.reconcile()  # poll_minutes later: it asks about the request, it does not submit another
        assert double.polls == [record.request_id] and len(double.submissions) == 1
        assert not first.state.last_reconcile_ok  # still pending
    finally:
        first.service.close()

    double.approve(record.request_id)
    second = Daemon(config, node="cas01", clock=clock)  # a restart: only the store links the two
    try:
        second.heartbeat()
        second.reconcile()
        assert double.polls == [record.request_id]  # the stored next check is kept across the restart
        clock.advance(timedelta(minutes=31))
        second.reconcile()
        assert second.state.last_reconcile_ok
        bundle = second.service.inventory.bundle("exchange")
    finally:
        second.service.close()
    assert double.polls == [record.request_id] * 2 and len(double.submissions) == 1
    assert x509.load_pem_x509_certificate(bundle.cert_pem) == double.requests[record.request_id].cert
    for name in NAMES:
        verify_chain(bundle.cert_pem, bundle.chain_pem, double.ca.root_pem, name)
