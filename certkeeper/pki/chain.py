"""Ordering and verifying certificate chains (RFC 5280 path validation by pyca/cryptography)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509 import verification

from certkeeper.errors import CertkeeperError, InputError, IssuedCertificateInvalid


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, verification.VerificationError):
        return False
    except Exception:  # noqa: BLE001 - InvalidSignature, UnsupportedAlgorithm
        return False
    return True


def order_chain(certs: Sequence[x509.Certificate], *, what: str = "chain") -> list[x509.Certificate]:
    """Order ``certs`` leaf -> root by issuer/subject (and signature); duplicates are dropped.

    The leaf is ``certs[0]`` if it issued none of the others, else the one certificate that issued
    none of the others. The root, if present, comes last.

    Raises:
        InputError: naming ``what`` when the certificates do not form one chain.
    """
    unique = list(dict.fromkeys(certs))
    if not unique:
        raise InputError(f"{what}: no certificates")

    def issues_another(candidate: x509.Certificate) -> bool:
        return any(other != candidate and _issued_by(other, candidate) for other in unique)

    if not issues_another(unique[0]):
        leaf = unique[0]
    else:
        leaves = [cert for cert in unique if not issues_another(cert)]
        if len(leaves) != 1:
            raise InputError(f"{what}: the certificates do not form a single chain")
        leaf = leaves[0]
    ordered = [leaf]
    remaining = [cert for cert in unique if cert != leaf]
    while remaining:
        current = ordered[-1]
        if current.issuer == current.subject and _issued_by(current, current):
            break  # reached a self-signed root
        parents = [cert for cert in remaining if _issued_by(current, cert)]
        if not parents:
            break
        ordered.append(parents[0])
        remaining.remove(parents[0])
    if remaining:
        subjects = "; ".join(cert.subject.rfc4514_string() for cert in remaining)
        raise InputError(f"{what}: certificate(s) not part of the chain: {subjects}")
    return ordered


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: datetime,
    name: str | None = None,
    error: type[CertkeeperError] = IssuedCertificateInvalid,
) -> list[x509.Certificate]:
    """Verify that ``leaf`` chains to one of ``roots`` at ``at``, as a TLS server certificate.

    Uses the Web PKI profile of ``cryptography.x509.verification`` (RFC 5280 path building, name
    constraints, key usage, serverAuth EKU, validity at ``at``). ``name`` is the DNS name a client
    would connect to; by default the leaf's first SAN (``*.x`` checked as ``wildcard-check.x``).

    Returns:
        The verified chain, leaf first, ending with the trusted root.

    Raises:
        ``error`` (IssuedCertificateInvalid by default; pass InputError for operator input) with
        the verifier's reason.
    """
    if name is None:
        sans = _sans(leaf)
        if not sans:
            raise error("the certificate has no DNS name in its subjectAltName")
        name = sans[0]
        if name.startswith("*."):
            name = "wildcard-check." + name[2:]
    try:
        subject = x509.DNSName(name)
    except ValueError:
        raise error(f"{name!r} is not a DNS name the verifier accepts") from None
    if not roots:
        raise error("no trusted root to verify against")
    moment = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(moment)
        .build_server_verifier(subject)
    )
    try:
        return verifier.verify(leaf, list(intermediates))
    except (verification.VerificationError, ValueError) as exc:
        raise error(f"chain does not verify for {name}: {exc}") from None


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


