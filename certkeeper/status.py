"""Derived views over stored facts: the input of lifecycle decisions, and what `show`/`status` print."""

from __future__ import annotations

from datetime import timedelta
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


def status_report(service: Service) -> dict[str, Any]:
    """`certkeeper status`: health, renewal, failures, what each binding serves, pending alerts."""
    from certkeeper.lifecycle.health import health

    now = service.clock.now()
    deployments: dict[str, list[Any]] = {}
    for row in service.repository.deployments():
        deployments.setdefault(row.certificate_id, []).append(row)
    certificates = []
    for item in service.repository.overview():
        state, reason = health(facts_from_overview(item), now)
        latest: dict[tuple[str, str], Any] = {}
        for row in deployments.get(item.id, []):
            key = (row.binding, row.node)
            if key not in latest or row.updated_at >= latest[key].updated_at:
                latest[key] = row
        certificates.append({
            "id": item.id, "names": list(item.names), "issuer": item.issuer, "health": state.value,
            "reason": reason, "revision": item.revision, "serial": item.serial, "fingerprint": item.fingerprint,
            "not_after": item.not_after, "renewal_time": item.renewal_time,
            "last_failure": item.last_failure_message, "last_failure_at": item.last_failure_at,
            "next_attempt_at": item.next_attempt_at, "rejected": item.rejected, "pending": item.pending,
            "deployments": [
                {
                    "binding": row.binding, "node": row.node, "state": row.state,
                    "served_fingerprint": row.served_fingerprint, "verified_at": row.verified_at,
                    "serves_current": bool(row.served_fingerprint) and row.served_fingerprint == item.fingerprint,
                    "error": row.error,
                }
                for row in latest.values()
            ],
        })
    return {
        "at": now, "certificates": certificates, "pending_alerts": service.repository.pending_alerts(),
        "failed_alerts": service.repository.dead_alerts(),
    }


def node_matrix(service: Service) -> dict[str, Any]:
    """`certkeeper status --nodes`: per certificate and node, what is served and whether it drifted."""
    nodes = {row.name: row for row in service.repository.nodes()}
    overview = {item.id: item for item in service.repository.overview()}
    revisions: dict[int, int] = {}
    rows = []
    latest: dict[tuple[str, str, str], Any] = {}
    for row in service.repository.deployments():
        key = (row.certificate_id, row.node, row.binding)
        if key not in latest or row.updated_at >= latest[key].updated_at:
            latest[key] = row
    with service.repository.session() as session:
        for row in latest.values():
            if row.revision_id not in revisions:
                revisions[row.revision_id] = service.repository.revision(session, row.revision_id).number
    now = service.clock.now()
    # a node whose heartbeat is older than this is down (the rollout gate stops waiting for it)
    stale_before = now - timedelta(seconds=3 * service.config.settings.daemon.lease_ttl_seconds)
    issuer = service.repository.lease_holder("issuer")
    issuer_node = issuer[0].rsplit(":", 1)[-1] if issuer is not None and issuer[1] >= now else None

    def alive(node: str) -> bool:
        return node in nodes and nodes[node].heartbeat_at >= stale_before

    for (cert_id, node, binding), row in sorted(latest.items()):
        item = overview.get(cert_id)
        current_fp = item.fingerprint if item else None
        heartbeat = nodes[node].heartbeat_at if node in nodes else None
        rows.append({
            "certificate": cert_id, "node": node, "binding": binding, "revision": revisions.get(row.revision_id),
            "current_revision": item.revision if item else None, "state": row.state,
            "served_fingerprint": row.served_fingerprint, "verified_at": row.verified_at,
            "drift": row.served_fingerprint != current_fp, "heartbeat_at": heartbeat, "alive": alive(node),
        })
    return {
        "nodes": [{"name": n.name, "host": n.host, "version": n.version, "heartbeat_at": n.heartbeat_at,
                   "alive": alive(n.name), "issuer": n.name == issuer_node}
                  for n in nodes.values()],
        "rows": rows,
    }
