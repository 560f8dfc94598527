"""What ``show``, ``status`` and ``status --nodes`` print: plain data, read from the store.

Each report is a function of what it reads (the store, ``now``, the settings) and returns plain
data (no key material), which the CLI prints as text or ``--json`` and the status page renders.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from certkeeper.cluster import Holder, node_alive
from certkeeper.config import Config, DaemonSettings, Settings
from certkeeper.errors import NotFound
from certkeeper.lifecycle.health import health
from certkeeper.outbox import Outbox
from certkeeper.store import certificates, deployments, events, leases, revisions
from certkeeper.store.deployments import Deployment
from certkeeper.store.facts import certificate_facts
from certkeeper.store.unit import Store


def installation(config: Config) -> dict[str, Any]:
    """Which config file and store this command uses, and why those (``certkeeper status``): so an
    admin sees at once whether the shell and the service open the same store."""
    from certkeeper.store.db import redact_url, sqlite_path

    found = config.locations
    config_file = config.path or (found.config_file if found else None)
    url = config.store_url
    database = sqlite_path(url)
    return {
        "config": {
            "path": str(config_file) if config_file else None,
            "exists": config.path is not None,
            "from": found.config_from if found else None,
        },
        "store": {
            "url": redact_url(url),
            "data_dir": str(config.data_dir),
            "data_dir_from": found.data_from if found else None,
            "path": str(database) if database else None,
            # a server database (PostgreSQL) is not asked here: None
            "exists": database.exists() if database else None,
        },
        "daemon": daemon_address(config.settings.daemon),
    }


def daemon_address(settings: DaemonSettings) -> dict[str, Any]:
    """Where the daemon's own server answers and who may read its status page, from the config
    (``certkeeper status``): the URL, and the guards (client certificates, a token, loopback)."""
    from certkeeper.metrics import parse_address
    from certkeeper.web.access import is_loopback

    address = settings.metrics_address
    if not address:
        return {"url": None, "status_page": False, "tls_certificate": None, "guards": []}
    guards = []
    if settings.client_ca_file:
        guards.append("client-certificate")
    if settings.status_token:
        guards.append("token")
    try:
        loopback = is_loopback(parse_address(address)[0])
    except ValueError:
        loopback = False
    if not guards and loopback:
        guards.append("loopback")
    scheme = "https" if settings.tls_certificate else "http"
    return {
        "url": f"{scheme}://{address}/",
        "status_page": settings.status_page,
        "tls_certificate": settings.tls_certificate,
        "client_ca_file": settings.client_ca_file,
        "client_names": list(settings.client_names),
        "guards": guards,
    }


def _in_config(source: str) -> bool:
    return source != "unconfigured"


def describe_certificate(store: Store, now: datetime, cert_id: str) -> dict[str, Any]:
    """Everything ``certkeeper show`` prints about one certificate."""
    with store.session() as session:
        items = certificates.overview(session, [cert_id])
        if not items:
            raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
        rows = deployments.all_rows(session, cert_id)
        numbers = revisions.numbers(session, [row.revision_id for row in rows])
        recent = events.recent(session, cert_id, limit=20)
        history = revisions.history(session, cert_id)
    item = items[0]
    state, reason = health(certificate_facts(item), now)
    data: dict[str, Any] = {
        "id": item.id, "names": list(item.names), "issuer": item.issuer, "key_type": item.key_type,
        "health": state.value, "reason": reason, "failure_count": item.failure_count,
        "last_failure": item.last_failure_message,
        "next_attempt_at": None if item.rejected else item.next_attempt_at,
        "rejected": item.rejected, "pending": item.pending, "awaiting_approval": item.pending_request,
        "in_config": _in_config(item.source), "source": item.source,
    }
    if item.revision is not None:
        data["current"] = {
            "revision": item.revision, "serial": item.serial, "fingerprint": item.fingerprint,
            "not_before": item.not_before, "not_after": item.not_after, "renewal_time": item.renewal_time,
        }
    data["revisions"] = [
        {"revision": row.number, "state": row.state, "origin": row.origin, "serial": row.serial,
         "not_before": row.not_before, "not_after": row.not_after, "requested_at": row.requested_at,
         "issued_at": row.issued_at, "revoked_at": row.revoked_at, "error": row.error}
        for row in history
    ]
    data["deployments"] = [
        {
            "binding": row.binding, "node": row.node, "state": row.state, "revision_id": row.revision_id,
            "revision": numbers.get(row.revision_id), "served_fingerprint": row.served_fingerprint,
            "verified_at": row.verified_at, "error": row.error,
        }
        for row in rows
    ]
    data["events"] = [
        {"at": event.at, "kind": event.kind, "message": event.message, "node": event.node} for event in recent
    ]
    return data


def status_report(store: Store, now: datetime) -> dict[str, Any]:
    """``certkeeper status``: health, renewal, failures, what each binding serves, alerts."""
    with store.session() as session:
        items = certificates.overview(session)
        latest = deployments.latest_per_target(deployments.all_rows(session))
    by_cert: dict[str, list[Deployment]] = {}
    for (cert_id, _node, _binding), row in sorted(latest.items()):
        by_cert.setdefault(cert_id, []).append(row)
    report = []
    for item in items:
        state, reason = health(certificate_facts(item), now)
        report.append({
            "id": item.id, "names": list(item.names), "issuer": item.issuer, "health": state.value,
            "reason": reason, "revision": item.revision, "serial": item.serial, "fingerprint": item.fingerprint,
            "not_before": item.not_before, "not_after": item.not_after, "renewal_time": item.renewal_time,
            "last_failure": item.last_failure_message, "last_failure_at": item.last_failure_at,
            "next_attempt_at": None if item.rejected else item.next_attempt_at, "rejected": item.rejected,
            "pending": item.pending, "awaiting_approval": item.pending_request, "in_config": _in_config(item.source),
            "deployments": [
                {
                    "binding": row.binding, "node": row.node, "state": row.state,
                    "served_fingerprint": row.served_fingerprint, "verified_at": row.verified_at,
                    "serves_current": bool(row.served_fingerprint) and row.served_fingerprint == item.fingerprint,
                    "error": row.error,
                }
                for row in by_cert.get(item.id, [])
            ],
        })
    counts = Outbox(store).counts()
    return {"at": now, "certificates": report, "pending_alerts": counts["pending"], "failed_alerts": counts["dead"]}


def node_matrix(store: Store, now: datetime, settings: Settings) -> dict[str, Any]:
    """``certkeeper status --nodes``: per certificate and node, what is served and whether it drifted."""
    ttl = timedelta(seconds=settings.daemon.lease_ttl_seconds)
    with store.session() as session:
        nodes = {row.name: row for row in leases.nodes(session)}
        overview = {item.id: item for item in certificates.overview(session)}
        latest = deployments.latest_per_target(deployments.all_rows(session))
        numbers = revisions.numbers(session, [row.revision_id for row in latest.values()])
        issuer_lease = leases.holder(session, "issuer")
    holder = Holder.parse(issuer_lease[0]) if issuer_lease is not None and issuer_lease[1] >= now else None
    issuer_node = holder.node if holder is not None else None

    def alive(name: str) -> bool:
        return name in nodes and node_alive(nodes[name].heartbeat_at, now, ttl)

    rows = []
    for (cert_id, node, binding), row in sorted(latest.items()):
        item = overview.get(cert_id)
        rows.append({
            "certificate": cert_id, "node": node, "binding": binding, "revision": numbers.get(row.revision_id),
            "current_revision": item.revision if item else None, "state": row.state,
            "served_fingerprint": row.served_fingerprint, "verified_at": row.verified_at,
            "drift": row.served_fingerprint != (item.fingerprint if item else None),
            "heartbeat_at": nodes[node].heartbeat_at if node in nodes else None, "alive": alive(node),
        })
    return {
        "nodes": [{"name": n.name, "host": n.host, "version": n.version, "heartbeat_at": n.heartbeat_at,
                   "alive": alive(n.name), "issuer": n.name == issuer_node}
                  for n in nodes.values()],
        "rows": rows,
    }


def alerts_report(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Alerts not delivered: waiting or retrying, and given up (``dead``), newest first.

    The notifier's name only, never its URL; ``last_error`` is the sender's own message, which
    names the notifier and not its address (see :mod:`certkeeper.notifiers.http`).
    """
    rows = sorted(Outbox(store).pending(), key=lambda alert: (alert.created_at, alert.id), reverse=True)
    return [
        {"id": alert.id, "notifier": alert.notifier, "kind": alert.kind, "certificate": alert.certificate_id,
         "created_at": alert.created_at, "attempts": alert.attempts, "next_attempt_at": alert.next_attempt_at,
         "dead": alert.dead, "last_error": alert.last_error}
        for alert in rows[:limit]
    ]


def events_report(store: Store, limit: int = 25) -> list[dict[str, Any]]:
    """The newest lifecycle events of every certificate, newest first."""
    with store.session() as session:
        rows = events.recent(session, None, limit=limit)
        return [{"at": event.at, "kind": event.kind, "certificate": event.certificate_id, "node": event.node,
                 "message": event.message} for event in rows]


def overview_report(store: Store, now: datetime, settings: Settings, *, events_limit: int = 25) -> dict[str, Any]:
    """Everything the status page shows at once: :func:`status_report`, :func:`node_matrix`,
    the undelivered alerts and the last events."""
    return {
        "at": now,
        "status": status_report(store, now),
        "nodes": node_matrix(store, now, settings),
        "alerts": alerts_report(store),
        "events": events_report(store, events_limit),
    }
