"""The Issuer contract, run against every built-in issuer in the registry, built the way the
service builds it (``load_issuer(kind).from_options``): the internal CA; ACME against Pebble 2.6;
AD CS against the certsrv protocol double (tests/fixtures/certsrv.py, not a Windows CA).

- ``issue`` returns the leaf for the request's key, naming exactly the request's names, and a chain
  that verifies to the CA's root; ``trust_anchors_pem`` is that root, or empty where the issuer
  cannot know it (a public ACME CA chains to the system's roots);
- an issuer that saves a checkpoint (an ACME order URL, an AD CS request ID) and dies right after
  it is resumed from that checkpoint without asking the CA again (no second order or request);
- a CSR whose signature does not verify is refused with IssuanceRejected, which is not retried.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certkeeper.clock import Clock, FrozenClock, SystemClock
from certkeeper.errors import IssuanceRejected
from certkeeper.issuers import ISSUERS, Issuer, load_issuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.certsrv import CertsrvDouble
from tests.fixtures.pebble import Pebble
from tests.support import Killed

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


@dataclass
class Case:
    """One issuer kind, ready to build: its options, its clock, the CA's root (from the CA, not
    from the issuer), and how many orders or requests the CA has received (None: no round trip)."""

    kind: str
    options: dict[str, Any]
    clock: Clock
    root_pem: Callable[[Issuer], bytes]
    requests_made: Callable[[], int] | None


def _internal_ca(request: pytest.FixtureRequest) -> Case:
    clock: FrozenClock = request.getfixturevalue("clock")
    # the built-in CA is its own root: the one it publishes for clients' trust stores
    return Case("internal-ca", {}, clock, lambda issuer: issuer.trust_anchors_pem(), None)


def _acme(request: pytest.FixtureRequest) -> Case:
    pebble: Pebble = request.getfixturevalue("pebble")
    options = {
        "directory": pebble.directory, "contact": ["mailto:admin@contoso.com"], "agree_tos": True,
        "ca_bundle": str(pebble.ca_bundle),
        "http01": {"mode": "standalone", "address": "127.0.0.1", "port": pebble.http_port},
    }
    return Case("acme", options, SystemClock(), lambda _issuer: pebble.root_pem(),
                lambda: len(re.findall(r"Added order ", pebble.log())))


def _adcs(request: pytest.FixtureRequest) -> Case:
    double: CertsrvDouble = request.getfixturevalue("certsrv")
    return Case("adcs", double.options(), SystemClock(), lambda _issuer: double.ca.root_pem,
                lambda: len(double.submissions))


CASES: dict[str, Callable[[pytest.FixtureRequest], Case]] = {
    "internal-ca": _internal_ca,
    "acme": _acme,
    "adcs": _adcs,
}


def test_every_registered_type_is_covered() -> None:
    assert set(CASES) == set(ISSUERS)


@pytest.fixture(params=sorted(ISSUERS))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[str(request.param)](request)


def build(case: Case, tmp_path: Path, state: MemoryState | None = None) -> Issuer:
    """The issuer as the service builds it; ``state`` is what the store keeps for it (an ACME
    account) between processes."""
    context = PluginContext(clock=case.clock, state=state or MemoryState(), data_dir=tmp_path,
                            resolve_secret=lambda ref: ref)
    issuer = load_issuer(case.kind).from_options("contract", case.options, context)
    assert isinstance(issuer, Issuer) and issuer.name == "contract"
    return issuer


def csr_for(names: tuple[str, ...]) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def request_for(csr_pem: bytes, **fields: Any) -> IssueRequest:
    return IssueRequest(certificate_id="contract", names=NAMES, csr_pem=csr_pem, **fields)


def check_issued(case: Case, issuer: Issuer, key: ec.EllipticCurvePrivateKey, cert_pem: bytes,
                 chain_pem: bytes) -> x509.Certificate:
    """The leaf is for ``key``, names exactly NAMES, and chains to the CA's root (at the case's now)."""
    leaf = x509.load_pem_x509_certificate(cert_pem)
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    root_pem = case.root_pem(issuer)
    intermediates = x509.load_pem_x509_certificates(chain_pem) if chain_pem.strip() else []
    builder = PolicyBuilder().store(Store(x509.load_pem_x509_certificates(root_pem))).time(case.clock.now())
    for name in NAMES:
        builder.build_server_verifier(x509.DNSName(name)).verify(leaf, intermediates)
    assert issuer.trust_anchors_pem() in (b"", root_pem)
    return leaf


def test_issue_returns_the_requests_key_with_exactly_its_names_and_a_chain_to_the_root(
    case: Case, tmp_path: Path
) -> None:
    issuer = build(case, tmp_path)
    key, csr_pem = csr_for(NAMES)
    result = issuer.issue(request_for(csr_pem))
    check_issued(case, issuer, key, result.cert_pem, result.chain_pem)


def test_an_issuer_that_dies_after_its_checkpoint_is_resumed_without_asking_the_ca_again(
    case: Case, tmp_path: Path
) -> None:
    state = MemoryState()
    issuer = build(case, tmp_path, state)
    key, csr_pem = csr_for(NAMES)
    saved: list[Mapping[str, Any]] = []

    def save_and_die(data: Mapping[str, Any]) -> None:
        saved.append(dict(data))
        raise Killed("killed right after saving the checkpoint")

    before = case.requests_made() if case.requests_made else 0
    try:
        result = issuer.issue(request_for(csr_pem, save_checkpoint=save_and_die))
    except Killed:
        assert saved, "died without a checkpoint"
        # a new process: a new issuer object, with what the store kept (its state, the
        # checkpoint, the same key and CSR)
        issuer = build(case, tmp_path, state)
        result = issuer.issue(request_for(csr_pem, checkpoint=saved[-1]))
    else:
        assert not saved and case.requests_made is None  # only an issuer without a CA round trip
    check_issued(case, issuer, key, result.cert_pem, result.chain_pem)
    if case.requests_made is not None:
        assert case.requests_made() == before + 1


def test_a_badly_signed_csr_is_rejected_and_not_retried(case: Case, tmp_path: Path) -> None:
    issuer = build(case, tmp_path)
    _key, csr_pem = csr_for(NAMES)
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    tampered = x509.load_der_x509_csr(bytes(der))
    assert not tampered.is_signature_valid
    bad = dataclasses.replace(request_for(csr_pem), csr_pem=tampered.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(IssuanceRejected) as refused:
        issuer.issue(bad)
    assert refused.value.retryable is False
