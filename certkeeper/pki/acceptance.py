"""Whether to accept what a CA returned, before anything is stored.

A CA's answer is checked as a client would check it, and against what was asked: the key is ours,
the names are exactly ours, it is valid now (allowing for clock skew), and the chain verifies to
the issuer's roots. A CA that returns something else (an AD CS template that builds the subject
from Active Directory, an intermediate that expired) gets :class:`IssuedCertificateInvalid`, and
nothing is stored. Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certkeeper.errors import CertkeeperError, InputError, IssuedCertificateInvalid
from certkeeper.pki import chain as pki_chain
from certkeeper.pki import parse
from certkeeper.pki.keys import PrivateKey

#: tolerated difference between this host's clock and the CA's when checking notBefore
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class Accepted:
    """An issued certificate that passed every check: the leaf and chain as PEM, and its facts."""

    cert_pem: bytes
    chain_pem: bytes
    info: parse.CertInfo


def accept_issued(
    cert_pem: bytes,
    chain_pem: bytes,
    *,
    key: PrivateKey,
    names: Sequence[str],
    anchors_pem: bytes,
    now: datetime,
    skew: timedelta = CLOCK_SKEW,
) -> Accepted:
    """Check a CA's answer (leaf first, then intermediates) against the request.

    ``anchors_pem`` are the issuer's roots; when empty, the last certificate of the chain is taken
    as the anchor (a CA whose roots are unknown still must send a chain that hangs together).

    Raises:
        IssuedCertificateInvalid: unreadable, another key, other names, expired, not yet valid
            beyond ``skew``, or a chain that does not verify; the message says which.
    """
    try:
        certs = parse.load_certificates(cert_pem + chain_pem, what="the issued certificate")
    except InputError as exc:
        raise IssuedCertificateInvalid(f"the CA returned an unreadable certificate: {exc}") from exc
    leaf, chain = certs[0], certs[1:]
    info = parse.cert_info(leaf)
    if not parse.public_key_matches(key, leaf):
        raise IssuedCertificateInvalid("the CA returned a certificate for another key; nothing stored")
    issued_names, wanted = set(info.names), set(names)
    if issued_names != wanted:
        missing = ", ".join(sorted(wanted - issued_names)) or "none"
        extra = ", ".join(sorted(issued_names - wanted)) or "none"
        raise IssuedCertificateInvalid(
            f"the CA returned a certificate with other names (missing: {missing}; unexpected: {extra}); "
            "nothing stored"
        )
    if info.not_after <= now:
        raise IssuedCertificateInvalid(f"the CA returned a certificate that expired at {info.not_after}")
    if info.not_before > now + skew:
        raise IssuedCertificateInvalid(
            f"the CA returned a certificate valid only from {info.not_before}: check this host's clock"
        )
    roots = parse.load_certificates(anchors_pem, what="the issuer's roots") if anchors_pem.strip() else chain[-1:]
    intermediates = [cert for cert in chain if cert not in roots]
    if roots:
        try:
            pki_chain.verify_chain(leaf, intermediates, roots, at=max(now, info.not_before), name=None)
        except CertkeeperError as exc:
            raise IssuedCertificateInvalid(f"the issued chain does not verify: {exc}") from exc
    return Accepted(
        cert_pem=cert_pem if len(certs) == 1 else pem(leaf),
        chain_pem=b"".join(pem(cert) for cert in chain),
        info=info,
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)
