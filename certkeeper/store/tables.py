"""The database tables, in SQLAlchemy Core. Facts only: health and status are derived.

The ORM classes of :mod:`.schema` are mapped onto these tables. Queries that only read columns
(the list view, the daemon's due-candidates query) use the tables directly, so commands that only
read never import ``sqlalchemy.orm`` (about 0.1 s and 6 MB of a short command's start-up).

Every change here needs an Alembic revision in ``migrations/versions`` (the test suite runs
``alembic check`` to prove the two agree).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from certkeeper.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _at(name: str, *, nullable: bool = False, index: bool = False) -> Column[object]:
    """An aware UTC datetime column."""
    return Column(name, UTCDateTime(), nullable=nullable, index=index or None)


#: a certificate under management: what it should be (the spec) and its retry state
certificates = Table(
    "certificates", metadata,
    Column("id", String(64), primary_key=True),
    Column("names", JSON, nullable=False),
    Column("issuer", String(64), nullable=False),
    Column("key_type", String(16), nullable=False),
    Column("renew_before_seconds", Integer, nullable=True),
    Column("bindings", JSON, nullable=False, default=list),
    Column("options", JSON, nullable=False, default=dict),
    #: "config" (declared in certkeeper.toml), "cli" (certkeeper issue), "import", "unconfigured"
    Column("source", String(16), nullable=False, default="cli"),
    Column("enabled", Boolean, nullable=False, default=True),
    _at("created_at"),
    _at("updated_at"),
    # failure and backoff facts (the next attempt is stored so a restart keeps waiting)
    Column("failure_count", Integer, nullable=False, default=0),
    _at("last_failure_at", nullable=True),
    Column("last_failure_message", Text, nullable=True),
    #: set when the CA refused in a way retrying cannot fix; cleared by an operator's --force
    Column("rejected", Boolean, nullable=False, default=False),
    _at("next_attempt_at", nullable=True),
    # row lease: keeps two issuances of the same certificate from overlapping
    Column("lease_holder", String(128), nullable=True),
    _at("lease_expires_at", nullable=True),
)

#: one issuance attempt of a certificate: pending, issued or failed
revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("certificate_id", String(64), ForeignKey("certificates.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("number", Integer, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    #: "issued" (by an issuer) or "imported"
    Column("origin", String(16), nullable=False, default="issued"),
    Column("issuer", String(64), nullable=False),
    Column("names", JSON, nullable=False),
    Column("key_type", String(16), nullable=False),
    #: Fernet token of the PKCS#8 private key; never stored in clear
    Column("key_encrypted", LargeBinary, nullable=False),
    Column("csr_pem", Text, nullable=True),
    Column("cert_pem", Text, nullable=True),
    Column("chain_pem", Text, nullable=True),
    Column("serial", String(64), nullable=True),
    Column("fingerprint_sha256", String(64), nullable=True, index=True),
    Column("thumbprint_sha1", String(40), nullable=True),
    _at("not_before", nullable=True),
    _at("not_after", nullable=True),
    #: computed once when issued (jitter never redrawn); replaced only by a new ARI window
    _at("renewal_time", nullable=True),
    _at("ari_window_start", nullable=True),
    _at("ari_window_end", nullable=True),
    Column("ari_explanation_url", Text, nullable=True),
    _at("ari_next_check_at", nullable=True),
    #: in-flight request state saved by the issuer (ACME order URL, AD CS request ID)
    Column("checkpoint", JSON, nullable=True),
    Column("replaces_revision_id", Integer, nullable=True),
    Column("error", Text, nullable=True),
    _at("requested_at"),
    _at("issued_at", nullable=True),
    _at("revoked_at", nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    UniqueConstraint("certificate_id", "number"),
)

#: a revision on one binding target on one node: what was deployed and what is served
deployments = Table(
    "deployments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("certificate_id", String(64), ForeignKey("certificates.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("revision_id", Integer, ForeignKey("revisions.id", ondelete="CASCADE"), nullable=False, index=True),
    #: the binding's key within the certificate (its ``name`` or ``type#index``)
    Column("binding", String(128), nullable=False),
    #: the node that deployed it ("" for a single-node install)
    Column("node", String(128), nullable=False, default=""),
    #: a :class:`certkeeper.model.DeploymentState`
    Column("state", String(16), nullable=False),
    Column("served_fingerprint", String(64), nullable=True),
    _at("verified_at", nullable=True),
    _at("deployed_at", nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    _at("next_attempt_at", nullable=True),
    Column("error", Text, nullable=True),
    #: binder facts, e.g. the thumbprint certkeeper installed into Exchange
    Column("details", JSON, nullable=False, default=dict),
    _at("updated_at"),
    UniqueConstraint("revision_id", "binding", "node"),
)

#: issuer material (built-in CA keys and certificates, ACME accounts), encrypted
issuer_state = Table(
    "issuer_state", metadata,
    Column("issuer", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value_encrypted", LargeBinary, nullable=False),
    _at("updated_at"),
)

#: named secrets (webhook URLs, SMTP passwords) referenced from the config as secret:NAME
secrets = Table(
    "secrets", metadata,
    Column("name", String(128), primary_key=True),
    Column("value_encrypted", LargeBinary, nullable=False),
    _at("updated_at"),
)

#: the audit trail of lifecycle events
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _at("at", index=True),
    Column("kind", String(32), nullable=False),
    Column("certificate_id", String(64), nullable=True, index=True),
    Column("revision_id", Integer, nullable=True),
    Column("node", String(128), nullable=False, default=""),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False, default=dict),
)

#: an alert waiting to be delivered (or delivered): retried with backoff, deduplicated
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notifier", String(64), nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("certificate_id", String(64), nullable=True),
    Column("payload", JSON, nullable=False),
    _at("created_at"),
    Column("attempts", Integer, nullable=False, default=0),
    _at("next_attempt_at"),
    _at("delivered_at", nullable=True),
    #: gave up (a permanent error, or too many attempts)
    Column("dead", Boolean, nullable=False, default=False),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("notifier", "dedupe_key"),
    Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
)

#: a daemon that has registered against this store (a CAS node)
nodes = Table(
    "nodes", metadata,
    Column("name", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("pid", Integer, nullable=False, default=0),
    _at("started_at"),
    _at("heartbeat_at"),
)

#: a named lease with a TTL (e.g. "issuer": the one node that orders and renews)
leases = Table(
    "leases", metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    _at("acquired_at"),
    _at("expires_at"),
)
