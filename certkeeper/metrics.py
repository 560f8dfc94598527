"""Prometheus metrics and /healthz for the daemon, on a localhost port.

Metric and label names follow cert-manager's (https://cert-manager.io/docs/devops-tips/prometheus-metrics/):
certificate series carry ``name`` (the certificate id), ``issuer_name`` and ``issuer_kind`` (the
issuer's type: ``acme``, ``internal-ca``, ``adcs``), so dashboards and alerts written for
cert-manager read certkeeper with a different prefix only.

The computation is a pure function of plain records (:func:`families`): the store is read at
scrape time by :func:`gather` (the only function here that knows the service), and the daemon
keeps no shadow state beyond its own last-run times.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from certkeeper.model import Health
    from certkeeper.service import Service
    from certkeeper.web.tls import ServerTls

log = logging.getLogger(__name__)
_QUERY = re.compile(r"\?\S*")


class DaemonState(Protocol):
    """What the daemon knows of its own last pass (:class:`certkeeper.daemon.DaemonState`)."""

    last_reconcile_ts: float
    last_reconcile_errors: int

PREFIX = "certkeeper_"
EXPIRATION = "certkeeper_certificate_expiration_timestamp_seconds"
NOT_BEFORE = "certkeeper_certificate_not_before_timestamp_seconds"
RENEWAL = "certkeeper_certificate_renewal_timestamp_seconds"
READY = "certkeeper_certificate_ready_status"
FAILURES = "certkeeper_certificate_failures"
DEPLOYMENT_VERIFIED = "certkeeper_deployment_verified"
LAST_RECONCILE = "certkeeper_last_reconcile_timestamp_seconds"
RECONCILE_ERRORS = "certkeeper_reconcile_errors"
ALERTS_PENDING = "certkeeper_alerts_pending"
ALERTS_FAILED = "certkeeper_alerts_failed"

CERTIFICATE_LABELS = ("name", "issuer_name", "issuer_kind")
CONDITIONS = ("True", "False", "Unknown")

#: every metric name the daemon exports, with its help text (the dashboard and rules use these)
METRICS: dict[str, str] = {
    EXPIRATION: "The date after which the certificate expires (notAfter), Unix seconds.",
    NOT_BEFORE: "The date before which the certificate is not valid (notBefore), Unix seconds.",
    RENEWAL: "The time certkeeper will renew the certificate, Unix seconds.",
    READY: "The ready condition of the certificate: 1 for the condition it is in.",
    FAILURES: "Consecutive failed issuance attempts of the certificate.",
    DEPLOYMENT_VERIFIED: "1 when every binding of the certificate on the node served the current certificate "
                         "at the last check, else 0.",
    LAST_RECONCILE: "When the daemon's last reconcile pass finished, Unix seconds (0: none yet).",
    RECONCILE_ERRORS: "Certificates that failed in the last reconcile pass (-1: the pass itself failed).",
    ALERTS_PENDING: "Alerts waiting in the outbox.",
    ALERTS_FAILED: "Alerts given up after a permanent error or too many attempts.",
}

Condition = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class CertificateRecord:
    """What the certificate series say about one managed certificate."""

    name: str
    issuer_name: str
    issuer_kind: str
    ready: Condition
    failure_count: int = 0
    not_before: datetime | None = None
    not_after: datetime | None = None
    renewal_time: datetime | None = None
    #: SHA-256 fingerprint of the current revision's certificate (None: never issued)
    fingerprint: str | None = None


@dataclass(frozen=True)
class DeploymentRecord:
    """The latest deployment row of one (certificate, binding, node)."""

    name: str
    node: str
    binding: str
    served_fingerprint: str | None
    updated_at: datetime


@dataclass(frozen=True)
class DaemonRecord:
    last_reconcile_ts: float = 0.0
    reconcile_errors: float = 0.0
    alerts_pending: int = 0
    alerts_failed: int = 0


def ready_condition(state: Health, has_certificate: bool) -> Condition:
    """cert-manager's Ready condition from certkeeper's health.

    ``True`` while a valid certificate needs nothing (Ready) or is being renewed on schedule
    (Renewing); ``Unknown`` while the very first certificate is being requested; ``False`` for
    Missing, Failing, Expiring and Expired.
    """
    value = state.value
    if value in ("Ready", "Renewing"):
        return "True" if has_certificate else "Unknown"
    return "False"


def deployment_verified(certificates: Sequence[CertificateRecord],
                        deployments: Iterable[DeploymentRecord]) -> dict[tuple[str, str], bool]:
    """(certificate, node) -> whether every binding there serves the current certificate.

    Only each (certificate, binding, node)'s latest row counts; a certificate with no current
    revision has no series.
    """
    current = {record.name: record.fingerprint for record in certificates if record.fingerprint}
    latest: dict[tuple[str, str, str], DeploymentRecord] = {}
    for row in deployments:
        key = (row.name, row.node, row.binding)
        if key not in latest or row.updated_at >= latest[key].updated_at:
            latest[key] = row
    verified: dict[tuple[str, str], bool] = {}
    for (name, node, _binding), row in sorted(latest.items()):
        if name not in current:
            continue
        ok = row.served_fingerprint is not None and row.served_fingerprint == current[name]
        verified[(name, node)] = verified.get((name, node), True) and ok
    return verified


def families(certificates: Sequence[CertificateRecord], deployments: Iterable[DeploymentRecord],
             daemon: DaemonRecord) -> list[Any]:
    """The metric families for one scrape (prometheus_client ``GaugeMetricFamily`` objects)."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, labels: Sequence[str] = ()) -> Any:
        return GaugeMetricFamily(name, METRICS[name], labels=list(labels))

    expiration, not_before, renewal = gauge(EXPIRATION, CERTIFICATE_LABELS), gauge(NOT_BEFORE, CERTIFICATE_LABELS), \
        gauge(RENEWAL, CERTIFICATE_LABELS)
    ready = gauge(READY, (*CERTIFICATE_LABELS, "condition"))
    failures = gauge(FAILURES, CERTIFICATE_LABELS)
    for record in certificates:
        labels = [record.name, record.issuer_name, record.issuer_kind]
        if record.not_after is not None:
            expiration.add_metric(labels, record.not_after.timestamp())
        if record.not_before is not None:
            not_before.add_metric(labels, record.not_before.timestamp())
        if record.renewal_time is not None:
            renewal.add_metric(labels, record.renewal_time.timestamp())
        for condition in CONDITIONS:
            ready.add_metric([*labels, condition], 1.0 if condition == record.ready else 0.0)
        failures.add_metric(labels, float(record.failure_count))
    verified = gauge(DEPLOYMENT_VERIFIED, ("name", "node"))
    for (name, node), ok in deployment_verified(certificates, deployments).items():
        verified.add_metric([name, node], 1.0 if ok else 0.0)
    last, errors = gauge(LAST_RECONCILE), gauge(RECONCILE_ERRORS)
    last.add_metric([], float(daemon.last_reconcile_ts))
    errors.add_metric([], float(daemon.reconcile_errors))
    pending, failed = gauge(ALERTS_PENDING), gauge(ALERTS_FAILED)
    pending.add_metric([], float(daemon.alerts_pending))
    failed.add_metric([], float(daemon.alerts_failed))
    return [expiration, not_before, renewal, ready, failures, verified, last, errors, pending, failed]


# -- reading the store (the one place that knows the service) ---------------------------------


def gather(service: Service, state: DaemonState) -> tuple[list[CertificateRecord], list[DeploymentRecord],
                                                          DaemonRecord]:
    """Records for :func:`families` from the store; a store that cannot be read yields none."""
    from certkeeper.errors import CertkeeperError
    from certkeeper.lifecycle.health import health
    from certkeeper.store import certificates as stored_certificates
    from certkeeper.store import deployments as stored_deployments
    from certkeeper.store.facts import certificate_facts

    now = service.clock.now()
    kinds: dict[str, str] = {}

    def kind(issuer: str) -> str:
        if issuer not in kinds:
            try:
                kinds[issuer] = service.config.issuer_table(issuer)[0]
            except CertkeeperError:
                kinds[issuer] = "unknown"  # removed from the config, still in the store
        return kinds[issuer]

    certificates: list[CertificateRecord] = []
    deployments: list[DeploymentRecord] = []
    try:
        with service.store.session() as session:
            items = stored_certificates.overview(session)
            rows = stored_deployments.all_rows(session)
        for item in items:
            state_now, _reason = health(certificate_facts(item), now)
            certificates.append(CertificateRecord(
                name=item.id, issuer_name=item.issuer, issuer_kind=kind(item.issuer),
                ready=ready_condition(state_now, item.revision is not None), failure_count=item.failure_count,
                not_before=item.not_before, not_after=item.not_after, renewal_time=item.renewal_time,
                fingerprint=item.fingerprint))
        deployments = [DeploymentRecord(name=row.certificate_id, node=row.node, binding=row.binding,
                                        served_fingerprint=row.served_fingerprint, updated_at=row.updated_at)
                       for row in rows]
    except Exception:
        log.exception("metrics: cannot read the store")
    pending = failed = 0
    try:
        counts = service.alerting.outbox().counts()
        pending, failed = counts["pending"], counts["dead"]
    except Exception:  # noqa: BLE001 - the scrape still answers
        log.warning("metrics: cannot count the outbox")
    daemon = DaemonRecord(last_reconcile_ts=float(state.last_reconcile_ts),
                          reconcile_errors=float(state.last_reconcile_errors),
                          alerts_pending=pending, alerts_failed=failed)
    return certificates, deployments, daemon


class StoreCollector:
    """A prometheus_client collector deriving every metric from the store on each scrape."""

    def __init__(self, service: Service, state: DaemonState) -> None:
        self.service = service
        self.state = state

    def collect(self) -> Iterator[Any]:
        yield from families(*gather(self.service, self.state))


# -- the HTTP endpoint ----------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int]:
    """"127.0.0.1:9464", "[::1]:9464", "[::]:9464", "0.0.0.0:9464" -> (host, port); ":9464" is
    loopback, as it always was (a wildcard must be written out)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Site(Protocol):
    """Another set of pages on the same server (:class:`certkeeper.web.server.StatusSite`):
    answers its own paths (``headers`` keyed in Title-Case; ``client`` the peer's address), None
    for the rest."""

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"", *,
               tls: bool = False, client: str = "", client_certificate: bool = False) -> Any: ...


class _TlsServer(ThreadingHTTPServer):
    """A threading server that does each TLS handshake on the connection's own thread (a slow or
    silent client never holds up ``accept``), with the context :class:`ServerTls` gives now."""

    tls: ServerTls

    def finish_request(self, request: Any, client_address: Any) -> None:
        from certkeeper.web.tls import HANDSHAKE_SECONDS

        request.settimeout(HANDSHAKE_SECONDS)
        try:
            connection = self.tls.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # no certificate, one from another CA, plain HTTP on the HTTPS port: the handshake says no
            log.debug("metrics: TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            try:
                connection.shutdown(socket.SHUT_WR)  # as socketserver's shutdown_request does
            except OSError:
                pass
            connection.close()


def serve(address: str, service: Service, state: DaemonState, health: Callable[[], dict[str, Any]],
          site: Site | None = None, tls: ServerTls | None = None) -> Any:
    """Start the metrics/health HTTP server in a thread; returns the server (call shutdown()).
    ``site`` (the status page) answers first for the paths it knows; with ``tls`` the server speaks
    only HTTPS and, when it requires client certificates, refuses a certificate that is not on
    ``client_names`` on every path."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(StoreCollector(service, state))

    class Handler(BaseHTTPRequestHandler):
        def _refused(self) -> bool:
            """Answer 403 to a client certificate the TLS settings do not accept."""
            if tls is None or not isinstance(self.connection, ssl.SSLSocket):
                return False
            reason = tls.refusal(self.connection.getpeercert(binary_form=True))
            if reason is None:
                return False
            log.warning("metrics: refused %s: %s", self.client_address[0], reason)
            self._send(403, [("Content-Type", "text/plain; charset=utf-8")], (reason + "\n").encode("utf-8"))
            return True

        def do_GET(self) -> None:
            if self._refused() or self._site("GET"):
                return
            if self.path.split("?")[0] == "/metrics":
                body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif self.path.split("?")[0] in ("/healthz", "/health"):
                data = health()
                body, status, ctype = json.dumps(data).encode(), 200 if data.get("ok") else 503, "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self._send(status, [("Content-Type", ctype)], body)

        def do_POST(self) -> None:
            if self._refused():
                return
            if not self._site("POST"):
                self._send(404, [("Content-Type", "text/plain")], b"not found\n")

        def _site(self, method: str) -> bool:
            if site is None:
                return False
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            body = self.rfile.read(min(length, 65536)) if method == "POST" and length > 0 else b""
            headers = {name.title(): value for name, value in self.headers.items()}
            # the TLS server speaks only TLS, and a client certificate it requires passed the handshake
            response = site.handle(method, self.path, headers, body, tls=tls is not None,
                                   client=str(self.client_address[0]),
                                   client_certificate=tls is not None and tls.requires_client_certificate)
            if response is None:
                return False
            self._send(response.status, response.headers, response.body)
            return True

        def _send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # the request line may carry /login?token=...: never log a query string
            log.debug("metrics: %s", _QUERY.sub("?…", format % args))

    host, port = parse_address(address)
    from certkeeper.listen import dual_stack_server

    server = dual_stack_server(ThreadingHTTPServer if tls is None else _TlsServer, host, port, Handler)
    if isinstance(server, _TlsServer):
        assert tls is not None
        server.tls = tls
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server
