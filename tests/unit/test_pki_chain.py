from __future__ import annotations

import random
from datetime import timedelta

import pytest

from certkeeper.errors import InputError, IssuedCertificateInvalid
from certkeeper.model import KeyType
from certkeeper.pki.chain import order_chain, verify_chain
from certkeeper.pki.fingerprint import sha1_thumbprint, sha256_fingerprint
from tests.unit.pki_support import NOW, Issued, issue, make_ca


@pytest.fixture(scope="module")
def issued() -> Issued:
    return issue(make_ca(), ["mail.contoso.com", "autodiscover.contoso.com"], KeyType.ECDSA_P256)


def test_order_chain_any_order(issued: Issued) -> None:
    certs = [issued.root, issued.cert, issued.intermediate]
    for _ in range(6):
        random.shuffle(certs)
        assert order_chain(certs) == [issued.cert, issued.intermediate, issued.root]
    assert order_chain([issued.intermediate, issued.cert, issued.cert]) == [issued.cert, issued.intermediate]
    assert order_chain([issued.cert]) == [issued.cert]


def test_order_chain_refuses_unrelated(issued: Issued) -> None:
    other = issue(make_ca(), ["x.contoso.com"])
    with pytest.raises(InputError, match=r"^upload: certificate\(s\) not part of the chain"):
        order_chain([issued.cert, issued.intermediate, other.intermediate], what="upload")
    with pytest.raises(InputError, match="do not form a single chain"):
        order_chain([issued.intermediate, issued.cert, other.cert])
    with pytest.raises(InputError, match="no certificates"):
        order_chain([])


def test_same_name_different_key_is_not_an_issuer(issued: Issued) -> None:
    # a second CA with the same names: issuer/subject match, signature does not
    twin = issue(make_ca(), ["mail.contoso.com"])
    assert twin.intermediate.subject == issued.intermediate.subject
    with pytest.raises(InputError):
        order_chain([issued.cert, twin.intermediate])


def test_verify_chain_returns_the_path(issued: Issued) -> None:
    path = verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW)
    assert path == [issued.cert, issued.intermediate, issued.root]
    path = verify_chain(
        issued.cert, [issued.intermediate], [issued.root], at=NOW, name="autodiscover.contoso.com"
    )
    assert path[0] == issued.cert


def test_verify_chain_failures_carry_the_reason(issued: Issued) -> None:
    with pytest.raises(IssuedCertificateInvalid, match=r"chain does not verify for owa\.contoso\.com"):
        verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW, name="owa.contoso.com")
    with pytest.raises(IssuedCertificateInvalid, match="chain does not verify"):
        verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW + timedelta(days=400))
    with pytest.raises(IssuedCertificateInvalid, match="chain does not verify"):
        verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW - timedelta(hours=1))
    with pytest.raises(IssuedCertificateInvalid, match="chain does not verify"):
        verify_chain(issued.cert, [], [issued.root], at=NOW)
    other = issue(make_ca(), ["x.contoso.com"])
    with pytest.raises(InputError, match="chain does not verify"):
        verify_chain(issued.cert, [issued.intermediate], [other.root], at=NOW, error=InputError)
    with pytest.raises(IssuedCertificateInvalid, match="no trusted root"):
        verify_chain(issued.cert, [issued.intermediate], [], at=NOW)
    with pytest.raises(IssuedCertificateInvalid, match="no DNS name"):
        verify_chain(issued.intermediate, [], [issued.root], at=NOW)


def test_fingerprints(issued: Issued) -> None:
    assert len(sha256_fingerprint(issued.cert)) == 64
    assert sha256_fingerprint(issued.cert) == sha256_fingerprint(issued.cert).lower()
    assert len(sha1_thumbprint(issued.cert)) == 40
    assert sha1_thumbprint(issued.cert) == sha1_thumbprint(issued.cert).upper()
