"""The ACME issuer's pure parts: ARI ids, chain choice, solver rules, problem mapping
(Retry-After: tests/unit/test_retry_after.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkeeper.errors import ConfigError, IssuanceError, IssuanceRejected
from certkeeper.issuers.acme import ari
from certkeeper.issuers.acme.client import NewOrder
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.issuers.acme.options import AcmeOptions
from certkeeper.issuers.acme.orders import pick_chain
from certkeeper.issuers.acme.problems import translate
from certkeeper.issuers.acme.solvers.dns01 import challenge_fqdn, txt_value

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _cert(serial: int, aki: bytes | None, issuer_cn: str = "Issuer", subject_cn: str = "leaf") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1)))
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_ari_cert_id_matches_rfc9773_example() -> None:
    # RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 0x0087654321
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari.cert_id(_cert(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        ari.cert_id(_cert(1, None))


def test_ari_window_parsing() -> None:
    retry = NOW + timedelta(hours=6)
    window = ari.parse_window({"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}},
                              retry)
    assert window.start == datetime(2026, 12, 1, tzinfo=UTC) and window.retry_after == retry
    for bad in ({}, {"suggestedWindow": "x"}, {"suggestedWindow": {"start": "2026-12-01T00:00:00"}},
                {"suggestedWindow": {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}):
        with pytest.raises(ValueError):
            ari.parse_window(bad, retry)


def test_new_order_carries_replaces_only_when_set() -> None:
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="mail.contoso.com")]
    assert NewOrder(identifiers=identifiers, replaces="a.b").to_partial_json()["replaces"] == "a.b"
    assert "replaces" not in NewOrder(identifiers=identifiers).to_partial_json()


def test_preferred_chain_by_issuer_name() -> None:
    leaf = _cert(1, b"1")
    default = [leaf, _cert(2, b"2", issuer_cn="Root X2", subject_cn="R10")]
    alternate = [leaf, _cert(3, b"3", issuer_cn="ISRG Root X1", subject_cn="R11")]
    assert pick_chain([default, alternate], "ISRG Root X1") is alternate
    assert pick_chain([default, alternate], "R10") is default  # named inside the chain
    assert pick_chain([default, alternate], "Nobody") is default
    assert pick_chain([default, alternate], None) is default


def test_solver_rules_and_defaults() -> None:
    options = AcmeOptions.model_validate({
        "dns01": {"mode": "exec", "script": "/bin/true"}, "http01": {"port": 8080},
        "solvers": [{"names": ["*.contoso.com", "contoso.com"], "type": "dns-01"}]})
    assert options.challenge_for("contoso.com") == "dns-01"
    assert options.challenge_for("*.contoso.com") == "dns-01"
    assert options.challenge_for("mail.contoso.com") == "dns-01"
    assert options.challenge_for("contoso.net") == "http-01"
    only_dns = AcmeOptions.model_validate({"dns01": {"mode": "exec", "script": "/bin/true"}})
    assert only_dns.challenge_for("mail.contoso.com") == "dns-01"
    both = AcmeOptions.model_validate({"dns01": {"mode": "exec", "script": "/bin/true"}, "http01": {}})
    assert both.challenge_for("*.contoso.com") == "dns-01" and both.challenge_for("contoso.com") == "http-01"
    assert AcmeOptions.model_validate({}).challenge_for("mail.contoso.com") == "http-01"


def test_dns01_values() -> None:
    # RFC 8555 §8.4 example is not given numerically; check the definition
    import base64
    import hashlib

    expected = base64.urlsafe_b64encode(hashlib.sha256(b"token.thumb").digest()).rstrip(b"=").decode()
    assert txt_value("token.thumb") == expected
    assert challenge_fqdn("*.contoso.com") == "_acme-challenge.contoso.com."
    assert challenge_fqdn("mail.contoso.com.") == "_acme-challenge.mail.contoso.com."


@pytest.mark.parametrize(("code", "cls"), [
    ("badCSR", IssuanceRejected), ("rejectedIdentifier", IssuanceRejected), ("caa", IssuanceRejected),
    ("unsupportedIdentifier", IssuanceRejected), ("badSignatureAlgorithm", IssuanceRejected),
    # a failed validation can fix itself (DNS propagation, a token served late): retried
    ("unauthorized", IssuanceError),
    # what a CA answers to a step repeated after a crash ("Cannot update challenge with status
    # processing"): retried, never a permanent refusal
    ("malformed", IssuanceError),
    ("rateLimited", IssuanceError), ("serverInternal", IssuanceError), ("connection", IssuanceError),
    ("dns", IssuanceError), ("incorrectResponse", IssuanceError), ("orderNotReady", IssuanceError),
])
def test_problem_classification(code: str, cls: type[IssuanceError]) -> None:
    problem = messages.Error(typ=f"urn:ietf:params:acme:error:{code}", detail="the CA's words",
                             identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="mail.contoso.com"))
    error = translate(problem, what="order")
    assert type(error) is cls
    assert error.name == "mail.contoso.com" and error.problem == f"{code}: the CA's words"
    assert "mail.contoso.com" in str(error) and "the CA's words" in str(error)


def test_unauthorized_is_permanent_only_for_an_eab_registration() -> None:
    from certkeeper.issuers.acme.problems import PERMANENT_WITH_UNAUTHORIZED

    problem = messages.Error(typ="urn:ietf:params:acme:error:unauthorized", detail="bad EAB MAC")
    assert type(translate(problem, what="ACME account registration", permanent=PERMANENT_WITH_UNAUTHORIZED)) is (
        IssuanceRejected)
    assert type(translate(problem, what="ACME account registration")) is IssuanceError


def test_a_permanent_subproblem_makes_the_problem_permanent() -> None:
    problem = messages.Error.from_json({
        "type": "urn:ietf:params:acme:error:malformed", "detail": "some identifiers were refused",
        "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked",
                         "identifier": {"type": "dns", "value": "www.blocked.test"}}]})
    error = translate(problem)
    assert isinstance(error, IssuanceRejected) and error.name == "www.blocked.test"


def test_subproblem_names_the_identifier() -> None:
    problem = messages.Error.from_json({
        "type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "Error creating new order",
        "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked",
                         "identifier": {"type": "dns", "value": "www.blocked.test"}}]})
    error = translate(problem)
    assert isinstance(error, IssuanceRejected) and error.name == "www.blocked.test"
    assert "blocked" in (error.problem or "")


def test_option_files_must_exist(tmp_path: object) -> None:
    from pathlib import Path

    from certkeeper.clock import SystemClock
    from certkeeper.plugins import MemoryState, PluginContext

    context = PluginContext(clock=SystemClock(), state=MemoryState(), data_dir=Path("/tmp"))
    with pytest.raises(ConfigError, match=r"issuers\.x\.ca_bundle: /nonexistent/ca.pem"):
        AcmeIssuer.from_options("x", {"ca_bundle": "/nonexistent/ca.pem"}, context)
    with pytest.raises(ConfigError, match=r"issuers\.x: eab_kid needs"):
        AcmeIssuer.from_options("x", {"eab_kid": "k"}, context)
    with pytest.raises(ConfigError, match=r"issuers\.x\.http01: Value error|issuers\.x\.http01"):
        AcmeIssuer.from_options("x", {"http01": {"mode": "webroot"}}, context)
