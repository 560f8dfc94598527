"""The database schema (SQLAlchemy 2 typed ORM). Facts only: health and status are derived.

Every change here needs an Alembic revision in ``migrations/versions`` (the test suite runs
``alembic check`` to prove the two agree).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from certkeeper.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class CertificateRow(Base):
    """A certificate under management: what it should be (the spec) and its retry state."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    names: Mapped[list[Any]] = mapped_column(JSON)
    issuer: Mapped[str] = mapped_column(String(64))
    key_type: Mapped[str] = mapped_column(String(16))
    renew_before_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    bindings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: "config" (declared in certkeeper.toml), "cli" (certkeeper issue), "import"
    source: Mapped[str] = mapped_column(String(16), default="cli")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # failure and backoff facts (the next attempt is stored so a restart keeps waiting)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    last_failure_message: Mapped[str | None] = mapped_column(Text, default=None)
    #: set when the CA refused in a way retrying cannot fix; cleared by an operator's --force
    rejected: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # row lease: keeps two issuances of the same certificate from overlapping
    lease_holder: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)

    revisions: Mapped[list[RevisionRow]] = relationship(
        back_populates="certificate", cascade="all, delete-orphan", order_by="RevisionRow.number"
    )


class RevisionRow(Base):
    """One issuance attempt of a certificate: pending, issued or failed."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("certificate_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: "issued" (by an issuer) or "imported"
    origin: Mapped[str] = mapped_column(String(16), default="issued")
    issuer: Mapped[str] = mapped_column(String(64))
    names: Mapped[list[Any]] = mapped_column(JSON)
    key_type: Mapped[str] = mapped_column(String(16))
    #: Fernet token of the PKCS#8 private key; never stored in clear
    key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    csr_pem: Mapped[str | None] = mapped_column(Text, default=None)
    cert_pem: Mapped[str | None] = mapped_column(Text, default=None)
    chain_pem: Mapped[str | None] = mapped_column(Text, default=None)
    serial: Mapped[str | None] = mapped_column(String(64), default=None)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    thumbprint_sha1: Mapped[str | None] = mapped_column(String(40), default=None)
    not_before: Mapped[datetime | None] = mapped_column(default=None)
    not_after: Mapped[datetime | None] = mapped_column(default=None)
    #: computed once when issued (jitter never redrawn); replaced only by a new ARI window
    renewal_time: Mapped[datetime | None] = mapped_column(default=None)
    ari_window_start: Mapped[datetime | None] = mapped_column(default=None)
    ari_window_end: Mapped[datetime | None] = mapped_column(default=None)
    ari_explanation_url: Mapped[str | None] = mapped_column(Text, default=None)
    ari_next_check_at: Mapped[datetime | None] = mapped_column(default=None)
    #: in-flight request state saved by the issuer (ACME order URL, AD CS request ID)
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    replaces_revision_id: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    requested_at: Mapped[datetime]
    issued_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), default=None)

    certificate: Mapped[CertificateRow] = relationship(back_populates="revisions")


class DeploymentRow(Base):
    """A revision on one binding target on one node: what was deployed and what is served."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("revision_id", "binding", "node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    #: the binding's key within the certificate (its ``name`` or ``type#index``)
    binding: Mapped[str] = mapped_column(String(128))
    #: the node that deployed it ("" for a single-node install)
    node: Mapped[str] = mapped_column(String(128), default="")
    #: a :class:`certkeeper.model.DeploymentState`
    state: Mapped[str] = mapped_column(String(16))
    served_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    deployed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: binder facts, e.g. the thumbprint certkeeper installed into Exchange
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class IssuerStateRow(Base):
    """Issuer material (built-in CA keys and certificates, ACME accounts), encrypted."""

    __tablename__ = "issuer_state"

    issuer: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class SecretRow(Base):
    """Named secrets (webhook URLs, SMTP passwords) referenced from the config as secret:NAME."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class EventRow(Base):
    """The audit trail of lifecycle events."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    certificate_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    revision_id: Mapped[int | None] = mapped_column(Integer, default=None)
    node: Mapped[str] = mapped_column(String(128), default="")
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxRow(Base):
    """An alert waiting to be delivered (or delivered): retried with backoff, deduplicated."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("notifier", "dedupe_key"),
        Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notifier: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    certificate_id: Mapped[str | None] = mapped_column(String(64), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    #: gave up (a permanent error, or too many attempts)
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class NodeRow(Base):
    """A daemon that has registered against this store (a CAS node)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(32))
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class LeaseRow(Base):
    """A named lease with a TTL (e.g. "issuer": the one node that orders and renews)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
