"""accept_issued: every branch of the checks on what a CA returned, as a table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from certkeeper.errors import IssuedCertificateInvalid
from certkeeper.model import KeyType
from certkeeper.pki.acceptance import CLOCK_SKEW, accept_issued
from certkeeper.pki.keys import generate_private_key
from tests.unit.pki_support import NOW, Issued, issue, make_ca

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


@pytest.fixture(scope="module")
def issued() -> Issued:
    return issue(make_ca(), NAMES)


@pytest.fixture(scope="module")
def stranger_root() -> bytes:
    return make_ca().root_pem()


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[Issued, bytes], dict[str, Any]]
    refusal: str | None  # a fragment of the message, or None when accepted


def _args(issued: Issued, **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "cert_pem": issued.cert_pem, "chain_pem": issued.chain_pem, "key": issued.key, "names": NAMES,
        "anchors_pem": issued.root_pem, "now": NOW,
    }
    args.update(changes)
    return args


CASES = [
    Case("as-asked", lambda i, _: _args(i), None),
    Case("names-in-another-order", lambda i, _: _args(i, names=tuple(reversed(NAMES))), None),
    Case("unreadable", lambda i, _: _args(i, cert_pem=b"-----BEGIN CERTIFICATE-----\nnot base64\n"),
         "unreadable certificate"),
    Case("another-key", lambda i, _: _args(i, key=generate_private_key(KeyType.ECDSA_P256)), "for another key"),
    Case("a-name-missing", lambda i, _: _args(i, names=(*NAMES, "owa.contoso.com")),
         "missing: owa.contoso.com; unexpected: none"),
    Case("a-name-too-many", lambda i, _: _args(i, names=NAMES[:1]),
         "missing: none; unexpected: autodiscover.contoso.com"),
    Case("expired", lambda i, _: _args(i, now=i.cert.not_valid_after_utc + timedelta(seconds=1)), "expired at"),
    Case("expires-this-second", lambda i, _: _args(i, now=i.cert.not_valid_after_utc), "expired at"),
    Case("host-clock-behind-within-skew",
         lambda i, _: _args(i, now=i.cert.not_valid_before_utc - CLOCK_SKEW + timedelta(seconds=1)), None),
    Case("host-clock-behind-beyond-skew",
         lambda i, _: _args(i, now=i.cert.not_valid_before_utc - CLOCK_SKEW - timedelta(seconds=1)),
         "check this host's clock"),
    Case("chain-to-another-root", lambda i, stranger: _args(i, anchors_pem=stranger), "does not verify"),
    Case("chain-missing-its-intermediate", lambda i, _: _args(i, chain_pem=b""), "does not verify"),
    Case("no-known-roots-chain-anchors-itself", lambda i, _: _args(i, anchors_pem=b""), None),
    Case("no-known-roots-and-no-chain", lambda i, _: _args(i, anchors_pem=b"", chain_pem=b""), None),
    Case("leaf-and-chain-in-one-pem", lambda i, _: _args(i, cert_pem=i.cert_pem + i.chain_pem, chain_pem=b""), None),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_accept_issued(case: Case, issued: Issued, stranger_root: bytes) -> None:
    args = case.change(issued, stranger_root)
    if case.refusal is None:
        accepted = accept_issued(**args)
        assert accepted.info.fingerprint_sha256 == issued.cert.fingerprint(hashes.SHA256()).hex()
        assert set(accepted.info.names) == set(NAMES)
        # the leaf alone, the chain apart, whatever way the CA sent them
        assert accepted.cert_pem.count(b"BEGIN CERTIFICATE") == 1
        assert accepted.chain_pem.count(b"BEGIN CERTIFICATE") == issued.chain_pem.count(b"BEGIN CERTIFICATE") or (
            args["chain_pem"] == b"" and args["cert_pem"] == issued.cert_pem
        )
    else:
        with pytest.raises(IssuedCertificateInvalid) as refused:
            accept_issued(**args)
        assert case.refusal in str(refused.value)
