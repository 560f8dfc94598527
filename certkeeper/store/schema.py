"""The ORM classes (SQLAlchemy 2 typed ORM), mapped onto the Core tables of :mod:`.tables`.

Commands that write go through these classes; the tables themselves, their columns, types,
defaults and constraints, are defined once, in :mod:`.tables` (what Alembic compares with the
migrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from certkeeper.store import tables
from certkeeper.store.tables import NAMING_CONVENTION

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "CertificateRow",
    "DeploymentRow",
    "EventRow",
    "IssuerStateRow",
    "LeaseRow",
    "NodeRow",
    "OutboxRow",
    "RevisionRow",
    "SecretRow",
]


class Base(DeclarativeBase):
    metadata = tables.metadata

class CertificateRow(Base):
    """A certificate under management: what it should be (the spec) and its retry state."""

    __table__ = tables.certificates

    id: Mapped[str]
    names: Mapped[list[Any]]
    issuer: Mapped[str]
    key_type: Mapped[str]
    renew_before_seconds: Mapped[int | None]
    bindings: Mapped[list[Any]]
    options: Mapped[dict[str, Any]]
    #: "config" (declared in certkeeper.toml), "cli" (certkeeper issue), "import"
    source: Mapped[str]
    enabled: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # failure and backoff facts (the next attempt is stored so a restart keeps waiting)
    failure_count: Mapped[int]
    last_failure_at: Mapped[datetime | None]
    last_failure_message: Mapped[str | None]
    #: set when the CA refused in a way retrying cannot fix; cleared by an operator's --force
    rejected: Mapped[bool]
    next_attempt_at: Mapped[datetime | None]
    # row lease: keeps two issuances of the same certificate from overlapping
    lease_holder: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]

    revisions: Mapped[list[RevisionRow]] = relationship(
        back_populates="certificate", cascade="all, delete-orphan", order_by="RevisionRow.number"
    )


class RevisionRow(Base):
    """One issuance attempt of a certificate: pending, issued or failed."""

    __table__ = tables.revisions

    id: Mapped[int]
    certificate_id: Mapped[str]
    number: Mapped[int]
    state: Mapped[str]
    #: "issued" (by an issuer) or "imported"
    origin: Mapped[str]
    issuer: Mapped[str]
    names: Mapped[list[Any]]
    key_type: Mapped[str]
    #: Fernet token of the PKCS#8 private key; never stored in clear
    key_encrypted: Mapped[bytes]
    csr_pem: Mapped[str | None]
    cert_pem: Mapped[str | None]
    chain_pem: Mapped[str | None]
    serial: Mapped[str | None]
    fingerprint_sha256: Mapped[str | None]
    thumbprint_sha1: Mapped[str | None]
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None]
    #: computed once when issued (jitter never redrawn); replaced only by a new ARI window
    renewal_time: Mapped[datetime | None]
    ari_window_start: Mapped[datetime | None]
    ari_window_end: Mapped[datetime | None]
    ari_explanation_url: Mapped[str | None]
    ari_next_check_at: Mapped[datetime | None]
    #: in-flight request state saved by the issuer (ACME order URL, AD CS request ID)
    checkpoint: Mapped[dict[str, Any] | None]
    replaces_revision_id: Mapped[int | None]
    error: Mapped[str | None]
    requested_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revocation_reason: Mapped[str | None]

    certificate: Mapped[CertificateRow] = relationship(back_populates="revisions")


class DeploymentRow(Base):
    """A revision on one binding target on one node: what was deployed and what is served."""

    __table__ = tables.deployments

    id: Mapped[int]
    certificate_id: Mapped[str]
    revision_id: Mapped[int]
    #: the binding's key within the certificate (its ``name`` or ``type#index``)
    binding: Mapped[str]
    #: the node that deployed it ("" for a single-node install)
    node: Mapped[str]
    #: a :class:`certkeeper.model.DeploymentState`
    state: Mapped[str]
    served_fingerprint: Mapped[str | None]
    verified_at: Mapped[datetime | None]
    deployed_at: Mapped[datetime | None]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]
    error: Mapped[str | None]
    #: binder facts, e.g. the thumbprint certkeeper installed into Exchange
    details: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class IssuerStateRow(Base):
    """Issuer material (built-in CA keys and certificates, ACME accounts), encrypted."""

    __table__ = tables.issuer_state

    issuer: Mapped[str]
    key: Mapped[str]
    value_encrypted: Mapped[bytes]
    updated_at: Mapped[datetime]


class SecretRow(Base):
    """Named secrets (webhook URLs, SMTP passwords) referenced from the config as secret:NAME."""

    __table__ = tables.secrets

    name: Mapped[str]
    value_encrypted: Mapped[bytes]
    updated_at: Mapped[datetime]


class EventRow(Base):
    """The audit trail of lifecycle events."""

    __table__ = tables.events

    id: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str]
    certificate_id: Mapped[str | None]
    revision_id: Mapped[int | None]
    node: Mapped[str]
    message: Mapped[str]
    details: Mapped[dict[str, Any]]


class OutboxRow(Base):
    """An alert waiting to be delivered (or delivered): retried with backoff, deduplicated."""

    __table__ = tables.outbox

    id: Mapped[int]
    notifier: Mapped[str]
    dedupe_key: Mapped[str]
    kind: Mapped[str]
    certificate_id: Mapped[str | None]
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    #: gave up (a permanent error, or too many attempts)
    dead: Mapped[bool]
    last_error: Mapped[str | None]


class NodeRow(Base):
    """A daemon that has registered against this store (a CAS node)."""

    __table__ = tables.nodes

    name: Mapped[str]
    host: Mapped[str]
    version: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class LeaseRow(Base):
    """A named lease with a TTL (e.g. "issuer": the one node that orders and renews)."""

    __table__ = tables.leases

    name: Mapped[str]
    holder: Mapped[str]
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
