"""Derived views over stored facts: the input of lifecycle decisions, and what `show`/`status` print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certkeeper.lifecycle.checks import CertificateFacts, RevisionFacts, SpecFacts
from certkeeper.store.repository import Overview

if TYPE_CHECKING:
    from certkeeper.service import Service


def facts_from_overview(item: Overview) -> CertificateFacts:
    current = None
    if item.revision is not None and item.not_before is not None and item.not_after is not None:
        current = RevisionFacts(
            names=item.revision_names or (), key_type=item.revision_key_type or "", issuer=item.revision_issuer or "",
            not_before=item.not_before, not_after=item.not_after, renewal_time=item.renewal_time,
        )
    return CertificateFacts(
        id=item.id, names=item.names, key_type=item.key_type, issuer=item.issuer, current=current,
        failure_count=item.failure_count, last_failure_at=item.last_failure_at,
        last_failure_message=item.last_failure_message, next_attempt_at=item.next_attempt_at,
        rejected=item.rejected, pending=item.pending, enabled=item.enabled,
        last_failure_spec=SpecFacts(*item.last_failure_spec) if item.last_failure_spec else None,
    )


def describe_certificate(service: Service, cert_id: str) -> dict[str, Any]:
    """Everything `certkeeper show` prints, as plain data (no key material)."""
    from certkeeper.errors import NotFound
    from certkeeper.lifecycle.health import health

    items = service.repository.overview([cert_id])
    if not items:
        raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
    item = items[0]
    now = service.clock.now()
    state, reason = health(facts_from_overview(item), now)
    data: dict[str, Any] = {
        "id": item.id, "names": list(item.names), "issuer": item.issuer, "key_type": item.key_type,
        "health": state.value, "reason": reason, "failure_count": item.failure_count,
        "last_failure": item.last_failure_message, "next_attempt_at": item.next_attempt_at,
        "rejected": item.rejected, "pending": item.pending,
    }
    if item.revision is not None:
        data["current"] = {
            "revision": item.revision, "serial": item.serial, "fingerprint": item.fingerprint,
            "not_before": item.not_before, "not_after": item.not_after, "renewal_time": item.renewal_time,
        }
    data["deployments"] = [
        {
            "binding": row.binding, "node": row.node, "state": row.state, "revision_id": row.revision_id,
            "served_fingerprint": row.served_fingerprint, "verified_at": row.verified_at, "error": row.error,
        }
        for row in service.repository.deployments(cert_id)
    ]
    data["events"] = [
        {"at": event.at, "kind": event.kind, "message": event.message, "node": event.node}
        for event in service.repository.events(cert_id, limit=20)
    ]
    return data
