"""Prometheus metrics and /healthz for the daemon, on a localhost port.

Metric names follow cert-manager's where they fit. Values are read from the store at scrape time:
the store is the truth, the daemon keeps no shadow state beyond its own last-run times.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from certkeeper.service import Service

log = logging.getLogger(__name__)


class DaemonState(Protocol):
    """What the daemon knows of its own last pass (:class:`certkeeper.daemon.DaemonState`)."""

    last_reconcile_ts: float
    last_reconcile_errors: int


class StoreCollector:
    """A prometheus_client collector deriving certificate metrics from the store on each scrape."""

    def __init__(self, service: Service, state: DaemonState) -> None:
        self.service = service
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from certkeeper.lifecycle.health import health
        from certkeeper.store import certificates
        from certkeeper.store.facts import certificate_facts

        expiration = GaugeMetricFamily(
            "certkeeper_certificate_expiration_timestamp_seconds", "notAfter of the current revision", labels=["id"]
        )
        renewal = GaugeMetricFamily(
            "certkeeper_certificate_renewal_timestamp_seconds", "Planned renewal time", labels=["id"]
        )
        ready = GaugeMetricFamily(
            "certkeeper_certificate_ready_status", "1 for the certificate's current condition",
            labels=["id", "condition"],
        )
        failures = GaugeMetricFamily(
            "certkeeper_certificate_failures", "Consecutive failed issuance attempts", labels=["id"]
        )
        now = self.service.clock.now()
        try:
            with self.service.store.session() as session:
                items = certificates.overview(session)
        except Exception:
            log.exception("metrics: cannot read the store")
            items = []
        for item in items:
            if item.not_after:
                expiration.add_metric([item.id], item.not_after.timestamp())
            if item.renewal_time:
                renewal.add_metric([item.id], item.renewal_time.timestamp())
            state, _reason = health(certificate_facts(item), now)
            for condition in ("True", "False"):
                is_ready = state.value == "Ready"
                ready.add_metric([item.id, condition], 1.0 if (condition == "True") == is_ready else 0.0)
            failures.add_metric([item.id], float(item.failure_count))
        yield expiration
        yield renewal
        yield ready
        yield failures
        last = GaugeMetricFamily(
            "certkeeper_last_reconcile_timestamp_seconds", "When the last reconcile pass finished"
        )
        last.add_metric([], float(self.state.last_reconcile_ts))
        yield last
        errors = GaugeMetricFamily("certkeeper_reconcile_errors", "Certificates that failed in the last pass")
        errors.add_metric([], float(self.state.last_reconcile_errors))
        yield errors
        try:
            pending = self.service.alerting.outbox().counts()["pending"]
        except Exception:  # noqa: BLE001
            pending = 0
        alerts = GaugeMetricFamily("certkeeper_alerts_pending", "Alerts waiting in the outbox")
        alerts.add_metric([], float(pending))
        yield alerts


def serve(address: str, service: Service, state: DaemonState, health: Callable[[], dict[str, Any]]) -> Any:
    """Start the metrics/health HTTP server in a thread; returns the server (call shutdown())."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(StoreCollector(service, state))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif self.path.split("?")[0] in ("/healthz", "/health"):
                data = health()
                body, status, ctype = json.dumps(data).encode(), 200 if data.get("ok") else 503, "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    host, _, port = address.rpartition(":")
    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server
