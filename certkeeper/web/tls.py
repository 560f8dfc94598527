"""HTTPS for the daemon's own server (status page, ``/metrics``, ``/healthz``), optionally with
client certificates.

``[daemon] tls_certificate = "ID"`` serves the current revision of a certificate certkeeper
manages itself (issued by the built-in CA, AD CS or ACME for the CAS host's own name), so the
daemon's key stays sealed in the store like every other key and the daemon picks up the renewed
revision on its own (:meth:`ServerTls.refresh`, after every reconcile pass). ``ssl`` loads a
certificate only from files: the key goes to a temporary file encrypted under a one-time
password (PKCS#8, :class:`~cryptography.hazmat.primitives.serialization.BestAvailableEncryption`)
that never leaves memory, and both files are deleted at once.

``[daemon] client_ca_file`` makes the server require a client certificate issued by one of the
CAs in that PEM file (TLS 1.2+, RFC 8446 §4.3.2 / RFC 5246 §7.4.4); ``client_names`` narrows it
to certificates naming one of the listed identities: the subject's common name, a DNS name, an
e-mail address (RFC 5280 §4.2.1.6), or the Microsoft user principal name that Windows user
certificates carry (otherName ``1.3.6.1.4.1.311.20.2.3``,
https://learn.microsoft.com/en-us/windows/security/identity-protection/smart-cards/smart-card-certificate-requirements-and-enumeration).
The rules are the ones Prometheus' exporter-toolkit offers (``client_ca_file``,
``client_allowed_sans``, https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md),
so ``/metrics`` is scraped with the same ``tls_config`` as any exporter.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certkeeper.errors import ConfigError, NotFound
from certkeeper.model import Bundle

log = logging.getLogger(__name__)

#: Microsoft's user principal name, in a subjectAltName otherName
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
#: a client has this long to finish its handshake before its connection is dropped
HANDSHAKE_SECONDS = 10.0


def _der_utf8(value: bytes) -> str | None:
    """The text of a DER ``UTF8String`` (X.690 §8.21: tag 12, definite length), or None."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2:2 + count], "big"), 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def client_identities(der: bytes) -> list[str]:
    """The names a client certificate asserts, as ``client_names`` matches them: the subject's
    common names, then its DNS names, e-mail addresses and user principal names."""
    certificate = x509.load_der_x509_certificate(der)
    names = [str(attr.value) for attr in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names += san.get_values_for_type(x509.DNSName)
    names += san.get_values_for_type(x509.RFC822Name)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == UPN_OID:
            upn = _der_utf8(other.value)
            if upn:
                names.append(upn)
    return names


def client_refusal(der: bytes | None, allowed: Iterable[str]) -> str | None:
    """Why a client whose certificate passed the handshake is still refused (one line), or None.

    ``allowed`` empty: any certificate from the client CAs is enough. Names compare without regard
    to case (DNS names and UPNs are case-insensitive; RFC 4343, and AD's own matching)."""
    wanted = {name.casefold() for name in allowed}
    if not wanted:
        return None
    if der is None:
        return "no client certificate"
    names = client_identities(der)
    if any(name.casefold() in wanted for name in names):
        return None
    shown = ", ".join(names[:4]) or "no name"
    return f"the client certificate ({shown}) is not one of [daemon] client_names"


@dataclass(frozen=True)
class Served:
    """What the server presents right now."""

    revision: int | None
    fingerprint: str
    context: ssl.SSLContext


class ServerTls:
    """The daemon's TLS settings and the context its server hands every new connection.

    Args:
        certificate_id: ``[daemon] tls_certificate``.
        load: the current issued revision of a certificate, with its key
            (:meth:`certkeeper.service.inventory.Inventory.bundle`); raises NotFound when none.
        client_ca_file: ``[daemon] client_ca_file``; None serves TLS without asking for a client
            certificate.
        client_names: ``[daemon] client_names``.
    """

    def __init__(self, certificate_id: str, load: Callable[[str], Bundle], *,
                 client_ca_file: Path | None = None, client_names: tuple[str, ...] = ()) -> None:
        self.certificate_id = certificate_id
        self.load = load
        self.client_ca_file = client_ca_file
        self.client_names = client_names
        #: replaced whole by refresh() (one reference, so a reader sees the old or the new one)
        self.served = self._build(self._bundle())

    @property
    def requires_client_certificate(self) -> bool:
        return self.client_ca_file is not None

    def context(self) -> ssl.SSLContext:
        """The context for a new connection (a renewal swaps it; connections open keep theirs)."""
        return self.served.context

    def refresh(self) -> bool:
        """Serve the certificate's current revision if it changed since it was loaded; True when it
        did. A failure keeps the revision being served and logs why."""
        try:
            bundle = self._bundle()
            if bundle.fingerprint == self.served.fingerprint:
                return False
            served = self._build(bundle)
        except Exception as exc:  # noqa: BLE001 - keep serving what works
            log.warning("the daemon's HTTPS keeps certificate %s revision %s: %s", self.certificate_id,
                        self.served.revision, exc)
            return False
        self.served = served
        log.info("the daemon's HTTPS now serves certificate %s revision %s (%s…)", self.certificate_id,
                 served.revision, served.fingerprint[:16])
        return True

    def refusal(self, der: bytes | None) -> str | None:
        """:func:`client_refusal` under this server's ``client_names``."""
        if not self.requires_client_certificate:
            return None
        return client_refusal(der, self.client_names)

    # -- building -------------------------------------------------------------------------------

    def _bundle(self) -> Bundle:
        try:
            return self.load(self.certificate_id)
        except NotFound as exc:
            raise ConfigError(f"[daemon] tls_certificate: {exc}; issue it first "
                              f"(certkeeper renew {self.certificate_id} --force)") from None

    def _build(self, bundle: Bundle) -> Served:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        load_chain(context, bundle)
        if self.client_ca_file is not None:
            load_client_cas(context, self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
            # an issuing CA in the file is a trust anchor of its own (its root need not be there),
            # so an admin can trust the users' issuing CA without every other CA under the root
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return Served(bundle.revision, bundle.fingerprint, context)


def load_client_cas(context: ssl.SSLContext, path: Path) -> None:
    """Trust the CA certificates in ``path`` for client certificates: PEM (one or more), or one DER
    certificate as ``certutil -ca.cert ca.cer`` writes it on Windows."""
    problem = f"[daemon] client_ca_file {path}: cannot read a CA certificate (PEM, or DER as certutil writes)"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{problem}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        else:
            context.load_verify_locations(cadata=data)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{problem} ({getattr(exc, 'reason', None) or exc})") from None


def load_chain(context: ssl.SSLContext, bundle: Bundle) -> None:
    """Load ``bundle``'s chain and key into ``context`` without its key ever on disk in clear."""
    password = secrets.token_bytes(32)
    key = serialization.load_pem_private_key(bundle.key_pem, password=None)
    sealed = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(password))
    with tempfile.TemporaryDirectory(prefix="certkeeper-tls-") as folder:
        chain_file, key_file = Path(folder) / "chain.pem", Path(folder) / "key.pem"
        chain_file.write_bytes(bundle.fullchain_pem)
        key_file.write_bytes(sealed)
        context.load_cert_chain(str(chain_file), str(key_file), password=password)
