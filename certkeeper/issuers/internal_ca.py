"""The built-in CA: a root and one issuing intermediate, kept in the plugin's encrypted state.

For Outlook Anywhere on an internal network (and for trying certkeeper out): it signs any name,
including internal ones (``mail.contoso.local``), that clients trust once the root is installed
(``certkeeper ca export``). Leaves follow the CA/B Forum shape Exchange and Windows expect:
SAN with every name, CN = first name, serverAuth EKU, critical key usage, SKI/AKI, SHA-256.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict, Field, field_validator

from certkeeper.clock import Clock
from certkeeper.config import validate_options
from certkeeper.errors import InputError, IssuanceRejected
from certkeeper.hostnames import NamePolicy
from certkeeper.model import IssueRequest, IssueResult, KeyType
from certkeeper.pki.csr import csr_names, load_csr, subject_for
from certkeeper.pki.keys import (
    PrivateKey,
    generate_private_key,
    load_private_key,
    private_key_pem,
    signature_hash_for,
)
from certkeeper.pki.parse import load_certificates
from certkeeper.plugins import PluginContext, StateStore

log = logging.getLogger(__name__)

#: tolerate clients whose clocks run a little behind
CLOCK_SKEW = timedelta(minutes=5)

# Stable keys in the plugin's StateStore (the store encrypts values at rest).
ROOT_CERT = "ca/root.crt"
ROOT_KEY = "ca/root.key"
INTERMEDIATE_CERT = "ca/intermediate.crt"
INTERMEDIATE_KEY = "ca/intermediate.key"


class InternalCAOptions(BaseModel):
    """``[issuers.NAME]`` options for ``type = "internal-ca"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: leaf lifetime in days; fractions allowed (0.01 = about 15 minutes)
    validity_days: float = Field(default=397, gt=0, le=36500)
    root_validity_days: float = Field(default=3650, gt=0, le=36500)
    intermediate_validity_days: float = Field(default=1825, gt=0, le=36500)
    #: RSA 3072: RSA because every Windows, Exchange and Outlook version validates RSA chains
    #: (ECDSA chains fail on older stacks and appliances); 3072 bits because the root outlives 2030,
    #: after which NIST SP 800-57 retires 2048-bit RSA (112-bit strength).
    ca_key_type: KeyType = KeyType.RSA3072
    common_name: str = Field(default="certkeeper Root CA", min_length=1, max_length=64)
    intermediate_common_name: str = Field(default="certkeeper Issuing CA 1", min_length=1, max_length=64)
    organization: str = Field(default="certkeeper", min_length=1, max_length=64)
    #: permitted DNS subtrees (``contoso.com`` permits it and every name below); empty = any name
    name_constraints: tuple[str, ...] = ()

    @field_validator("name_constraints")
    @classmethod
    def _check_subtrees(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for subtree in value:
            name = subtree.strip().lower().lstrip(".").rstrip(".")
            labels = name.split(".")
            if not name or any(
                not label or len(label) > 63 or not all(ch.isalnum() or ch == "-" for ch in label)
                or not label.isascii() or label.startswith("-") or label.endswith("-")
                for label in labels
            ):
                raise ValueError(f"{subtree!r} is not a DNS name (use A-labels, e.g. contoso.com)")
            cleaned.append(name)
        return tuple(cleaned)


class InternalCA:
    """A private two-level CA that issues server certificates immediately.

    The CA is created on first use (or by :meth:`initialize`) and kept in ``state``: root
    certificate and key (the key is needed to re-create the intermediate), intermediate
    certificate and key.
    """

    name_policy = NamePolicy.PRIVATE

    def __init__(self, name: str, options: InternalCAOptions, state: StateStore, clock: Clock) -> None:
        self.name = name
        self.options = options
        self.state = state
        self.clock = clock

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        validated = validate_options(InternalCAOptions, options, where=f"issuers.{name}")
        return cls(name, validated, context.state, context.clock)

    # -- CA material ------------------------------------------------------------------------------

    def is_initialized(self) -> bool:
        keys = (ROOT_CERT, INTERMEDIATE_CERT, INTERMEDIATE_KEY)
        return all(self.state.get(key) is not None for key in keys)

    def initialize(self, *, force: bool = False) -> None:
        """Create a new root and issuing intermediate.

        Raises:
            InputError: the CA exists and ``force`` is false (a new root means every client must
                trust it again).
        """
        if self.state.get(ROOT_CERT) is not None and not force:
            raise InputError(
                f"issuer {self.name!r}: the CA already exists; re-creating it replaces the root every "
                "client trusts (use force to do it anyway)"
            )
        now = self.clock.now()
        root_key = generate_private_key(self.options.ca_key_type)
        root_name = self._ca_name(self.options.common_name)
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=self.options.root_validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, signature_hash_for(root_key))
        )
        self.state.put(ROOT_KEY, private_key_pem(root_key))
        self.state.put(ROOT_CERT, root.public_bytes(Encoding.PEM))
        self._create_intermediate(root, root_key, now)
        log.info("issuer %s: created root %s and issuing CA", self.name, root_name.rfc4514_string())

    def rotate_intermediate(self) -> None:
        """Re-create the issuing intermediate under the existing root (new key, new validity).

        Leaves already issued keep verifying with the chain they were issued with.
        """
        root, root_key = self._root()
        self._create_intermediate(root, root_key, self.clock.now())
        log.info("issuer %s: re-created the issuing CA", self.name)

    def root_pem(self) -> bytes:
        self._ensure()
        return _require(self.state.get(ROOT_CERT), ROOT_CERT)

    def chain_pem(self) -> bytes:
        """The issuing intermediate (PEM): what follows a leaf in a served chain."""
        self._ensure()
        return _require(self.state.get(INTERMEDIATE_CERT), INTERMEDIATE_CERT)

    def trust_anchors_pem(self) -> bytes:
        return self.root_pem()

    # -- issuing ----------------------------------------------------------------------------------

    def permits(self, name: str) -> bool:
        """Whether ``name`` is inside the configured name constraints (always, without any)."""
        subtrees = self.options.name_constraints
        bare = name.removeprefix("*.")
        return not subtrees or any(bare == tree or bare.endswith("." + tree) for tree in subtrees)

    def issue(self, request: IssueRequest) -> IssueResult:
        """Sign the request's CSR for exactly ``request.names``.

        Raises:
            IssuanceRejected: unreadable CSR, bad CSR signature, names in the CSR that differ from
                the request, an unusable key, or an expired issuing CA.
        """
        self._ensure()
        intermediate, intermediate_key = self._intermediate()
        try:
            csr = load_csr(request.csr_pem)
        except InputError as exc:
            raise IssuanceRejected(f"issuer {self.name!r}: {exc}", problem="badCSR") from None
        if not csr.is_signature_valid:
            raise IssuanceRejected(f"issuer {self.name!r}: the CSR signature is invalid", problem="badCSR")
        if set(csr_names(csr)) != set(request.names) or not request.names:
            raise IssuanceRejected(
                f"issuer {self.name!r}: the CSR's names {sorted(csr_names(csr))} differ from the "
                f"requested names {sorted(request.names)}",
                problem="badCSR",
            )
        outside = [name for name in request.names if not self.permits(name)]
        if outside:
            raise IssuanceRejected(
                f"issuer {self.name!r}: {', '.join(outside)} outside the CA's name constraints "
                f"({', '.join(self.options.name_constraints)})",
                problem="rejectedIdentifier",
                name=outside[0],
            )
        public_key = _leaf_key(csr.public_key(), self.name)
        now = self.clock.now()
        not_after = min(now + timedelta(days=self.options.validity_days), intermediate.not_valid_after_utc)
        if not_after <= now:
            raise IssuanceRejected(
                f"issuer {self.name!r}: the issuing CA expired on "
                f"{intermediate.not_valid_after_utc:%Y-%m-%d}; re-create it (certkeeper ca init --force)"
            )
        leaf = self._sign_leaf(request.names, public_key, intermediate, intermediate_key, now, not_after)
        request.progress(f"signed by {intermediate.subject.rfc4514_string()}")
        return IssueResult(
            cert_pem=leaf.public_bytes(Encoding.PEM),
            chain_pem=intermediate.public_bytes(Encoding.PEM),
            details={"serial": f"{leaf.serial_number:X}"},
        )

    def _sign_leaf(
        self,
        names: Sequence[str],
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        intermediate: x509.Certificate,
        intermediate_key: PrivateKey,
        now: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        subject = subject_for(names)
        issuer_ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(intermediate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())  # 159 random bits, positive, < 20 octets
            # backdated for clients with a slow clock, but by at most a tenth of the lifetime, so a
            # short-lived certificate's renewal time (half its life) is not already past when issued
            .not_valid_before(now - min(CLOCK_SKEW, (not_after - now) / 10))
            .not_valid_after(not_after)
            # RFC 5280 §4.2.1.6: with an empty subject the SAN must be critical
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                critical=len(subject) == 0,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA key transport (TLS 1.0-1.2 RSA key exchange), which old Windows clients use
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
            )
        )
        return builder.sign(intermediate_key, signature_hash_for(intermediate_key))

    # -- internals --------------------------------------------------------------------------------

    #: first use creates the CA: parallel issuance (renew --all) must not create two roots
    _init_lock = threading.Lock()

    def _ensure(self) -> None:
        if self.is_initialized():
            return
        with self._init_lock:
            if not self.is_initialized():
                self._create_missing()

    def _create_missing(self) -> None:
        if self.state.get(ROOT_CERT) is not None and self.state.get(ROOT_KEY) is not None:
            # never replace a root clients already trust just because the intermediate is missing
            log.info("issuer %s: issuing CA missing, re-creating it under the existing root", self.name)
            self.rotate_intermediate()
        else:
            log.info("issuer %s: no CA yet, creating one", self.name)
            self.initialize()

    def _ca_name(self, common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.options.organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def _root(self) -> tuple[x509.Certificate, PrivateKey]:
        cert_pem = self.state.get(ROOT_CERT)
        key_pem = self.state.get(ROOT_KEY)
        if cert_pem is None or key_pem is None:
            raise InputError(f"issuer {self.name!r}: the root CA or its key is missing; run ca init --force")
        return load_certificates(cert_pem, what=f"issuer {self.name} root")[0], load_private_key(
            key_pem, what=f"issuer {self.name} root key"
        )

    def _intermediate(self) -> tuple[x509.Certificate, PrivateKey]:
        cert_pem = _require(self.state.get(INTERMEDIATE_CERT), INTERMEDIATE_CERT)
        key_pem = _require(self.state.get(INTERMEDIATE_KEY), INTERMEDIATE_KEY)
        return load_certificates(cert_pem, what=f"issuer {self.name} issuing CA")[0], load_private_key(
            key_pem, what=f"issuer {self.name} issuing CA key"
        )

    def _create_intermediate(self, root: x509.Certificate, root_key: PrivateKey, now: datetime) -> None:
        key = generate_private_key(self.options.ca_key_type)
        root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(self._ca_name(self.options.intermediate_common_name))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(
                min(now + timedelta(days=self.options.intermediate_validity_days), root.not_valid_after_utc)
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False
            )
        )
        if self.options.name_constraints:
            # On the intermediate, where every path validator applies them (RFC 5280 §4.2.1.10);
            # some clients ignore constraints on trust anchors.
            builder = builder.add_extension(
                x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName(name) for name in self.options.name_constraints],
                    excluded_subtrees=None,
                ),
                critical=True,
            )
        intermediate = builder.sign(root_key, signature_hash_for(root_key))
        self.state.put(INTERMEDIATE_KEY, private_key_pem(key))
        self.state.put(INTERMEDIATE_CERT, intermediate.public_bytes(Encoding.PEM))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key(public_key: object, issuer: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        return public_key
    raise IssuanceRejected(
        f"issuer {issuer!r}: the CSR's key is not RSA >= 2048 or ECDSA P-256/P-384", problem="badCSR"
    )


def _require(value: bytes | None, key: str) -> bytes:
    if value is None:
        raise InputError(f"CA state {key!r} is missing; run ca init --force")
    return value


