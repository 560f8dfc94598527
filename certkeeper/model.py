"""Plain, frozen values passed between the core and the plugins.

Plugins (issuers, binders, notifiers) take and return these and never see the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class KeyType(StrEnum):
    """Private key algorithms certkeeper generates.

    RSA 2048 is the default: every Exchange version accepts it. ECDSA works only on Exchange 2016
    CU23+ / 2019 CU13+ with the April 2024 Hotfix Update (KB5037224,
    https://support.microsoft.com/help/5037224).
    """

    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")


DEFAULT_KEY_TYPE = KeyType.RSA2048


class RevisionState(StrEnum):
    PENDING = "pending"  # key made, request in flight (ACME order placed, AD CS awaiting approval)
    ISSUED = "issued"
    FAILED = "failed"


class DeploymentState(StrEnum):
    """Where one revision stands on one binding of one node (stored in ``deployments.state``)."""

    DEPLOYING = "deploying"  # the binder is at work (or the process died while it was)
    DEPLOYED = "deployed"  # deployed; the binding has no endpoint to prove it
    VERIFIED = "verified"  # deployed, and a TLS handshake saw it served
    FAILED = "failed"  # deploy or verification failed; the previous revision was put back


#: states in which a revision counts as served on its binding
SERVED_STATES = frozenset({DeploymentState.DEPLOYED, DeploymentState.VERIFIED})


class Health(StrEnum):
    """Derived from stored facts, never stored."""

    READY = "Ready"
    RENEWING = "Renewing"
    FAILING = "Failing"
    EXPIRING = "Expiring"
    EXPIRED = "Expired"
    MISSING = "Missing"


@dataclass(frozen=True)
class Bundle:
    """One issued certificate with its chain and private key, as a binder deploys it.

    ``key_pem`` is unencrypted PKCS#8 and lives only in memory; ``repr`` never shows it.
    ``fingerprint`` is the SHA-256 of the leaf's DER, lower-case hex without colons.
    """

    certificate_id: str
    cert_pem: bytes
    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    fingerprint: str
    serial: str
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    revision: int | None = None

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem


@dataclass(frozen=True)
class IssueRequest:
    """What an issuer needs to produce a certificate: the names and our CSR.

    ``checkpoint`` is what an earlier, interrupted attempt saved through ``save_checkpoint`` (an
    ACME order URL, an AD CS request ID), so a restart resumes instead of ordering again.
    ``replaces_cert_pem`` is the certificate being renewed (ACME ARI ``replaces``).
    ``progress`` reports human-readable steps to the CLI.
    """

    certificate_id: str
    names: tuple[str, ...]
    csr_pem: bytes
    key_type: KeyType = DEFAULT_KEY_TYPE
    replaces_cert_pem: bytes | None = None
    replaces_chain_pem: bytes | None = None
    checkpoint: Mapping[str, Any] | None = None
    save_checkpoint: Callable[[Mapping[str, Any]], None] = field(default=lambda _data: None, repr=False)
    progress: Callable[[str], None] = field(default=lambda _step: None, repr=False)


@dataclass(frozen=True)
class IssueResult:
    """The issuer's answer: the leaf and the intermediates (PEM), leaf first."""

    cert_pem: bytes
    chain_pem: bytes
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenewalWindow:
    """An ACME Renewal Information window (RFC 9773 §4.2)."""

    start: datetime
    end: datetime
    retry_after: datetime
    explanation_url: str | None = None


@dataclass(frozen=True)
class EndpointCheck:
    """What one endpoint served for one SNI name."""

    endpoint: str
    server_name: str | None
    ok: bool
    served_fingerprint: str | None
    message: str


@dataclass(frozen=True)
class Verification:
    """The result of probing every endpoint of a binding."""

    checks: tuple[EndpointCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def served_fingerprint(self) -> str | None:
        fingerprints = {check.served_fingerprint for check in self.checks if check.served_fingerprint}
        return fingerprints.pop() if len(fingerprints) == 1 else None

    def summary(self) -> str:
        failed = [check for check in self.checks if not check.ok]
        if not failed:
            return f"{len(self.checks)} endpoint check(s) passed"
        return "; ".join(f"{check.endpoint} ({check.server_name}): {check.message}" for check in failed)


class EventKind(StrEnum):
    ISSUED = "issued"
    RENEWED = "renewed"
    RENEWAL_FAILED = "renewal_failed"
    REJECTED = "rejected"
    PENDING_APPROVAL = "pending_approval"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy_failed"
    VERIFY_MISMATCH = "verify_mismatch"
    EXPIRING = "expiring"
    RECOVERED = "recovered"
    DIGEST = "digest"
    TEST = "test"


@dataclass(frozen=True)
class Event:
    """Something an operator should hear about; what notifiers send.

    ``action`` says what to do next, in one sentence. ``details`` holds short, non-secret facts
    (the CA's problem, the threshold crossed, the served fingerprint).
    """

    kind: EventKind
    occurred_at: datetime
    message: str
    certificate_id: str | None = None
    names: tuple[str, ...] = ()
    not_after: datetime | None = None
    days_left: float | None = None
    action: str = ""
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        subject = self.certificate_id or "certkeeper"
        return f"[certkeeper] {self.kind.value.replace('_', ' ')}: {subject}"
