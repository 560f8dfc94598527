"""The daemon's /metrics in cert-manager's terms, served by metrics.serve (what the daemon starts)
over a real store, with real deployments verified by TLS handshakes against a loopback server."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.daemon import DaemonState
from certkeeper.metrics import (
    METRICS,
    CertificateRecord,
    DaemonRecord,
    DeploymentRecord,
    deployment_verified,
    families,
    ready_condition,
    serve,
)
from certkeeper.model import Health
from certkeeper.service import Service
from certkeeper.store import certificates
from tests.fixtures.core import free_port
from tests.fixtures.gateways import ReloadingTlsServer

NOW = datetime.now(UTC).replace(microsecond=0)


def scrape(url: str) -> dict[str, list[Any]]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_metrics_endpoint_serves_cert_manager_labels_and_node_verification(
        tmp_path: Path, tls_gateway: tuple[ReloadingTlsServer, Path, Path]) -> None:
    server, fullchain, key = tls_gateway
    clock = FrozenClock(NOW)
    binding = {"type": "files", "name": "gw", "fullchain": str(fullchain), "key": str(key),
               "verify": [f"127.0.0.1:{server.port}"], "settle_seconds": 0, "probe_timeout": 3}
    config = parse({"issuers": {"corp": {"type": "internal-ca"}},
                    "certificates": [{"id": "mail", "names": ["mail.contoso.com"], "issuer": "corp",
                                      "bindings": [binding]},
                                     {"id": "never", "names": ["never.contoso.com"], "issuer": "corp"}],
                    "daemon": {"node": "cas01"}},
                   data_dir=tmp_path / "data")
    service = Service.open(config, clock=clock, node="cas01")
    service.specs.sync_config()
    service.issuance.issue_certificate("mail")
    assert all(result.ok for result in service.deployment.deploy("mail"))

    state = DaemonState(last_reconcile_ts=1234.5, last_reconcile_errors=0)
    port = free_port()
    http = serve(f"[::]:{port}", service, state, lambda: {"ok": True})
    try:
        seen = scrape(f"http://127.0.0.1:{port}/metrics")
        # dual stack: the same listener answers on IPv6 loopback
        assert scrape(f"http://[::1]:{port}/metrics").keys() == seen.keys()

        labels = {"name": "mail", "issuer_name": "corp", "issuer_kind": "internal-ca"}
        with service.store.session() as session:
            item = certificates.overview(session, ["mail"])[0]
        expiration = [s for s in seen["certkeeper_certificate_expiration_timestamp_seconds"] if s.labels == labels]
        assert [s.value for s in expiration] == [item.not_after.timestamp()]
        not_before = [s for s in seen["certkeeper_certificate_not_before_timestamp_seconds"] if s.labels == labels]
        assert [s.value for s in not_before] == [item.not_before.timestamp()]
        renewal = [s for s in seen["certkeeper_certificate_renewal_timestamp_seconds"] if s.labels == labels]
        assert [s.value for s in renewal] == [item.renewal_time.timestamp()]
        ready = {(s.labels["name"], s.labels["condition"]): s.value
                 for s in seen["certkeeper_certificate_ready_status"]}
        assert ready == {("mail", "True"): 1.0, ("mail", "False"): 0.0, ("mail", "Unknown"): 0.0,
                         ("never", "True"): 0.0, ("never", "False"): 1.0, ("never", "Unknown"): 0.0}
        verified = {(s.labels["name"], s.labels["node"]): s.value for s in seen["certkeeper_deployment_verified"]}
        assert verified == {("mail", "cas01"): 1.0}
        assert [s.value for s in seen["certkeeper_last_reconcile_timestamp_seconds"]] == [1234.5]
        assert set(seen) == {name.removesuffix("_total") for name in METRICS}

        # someone puts another certificate on the gateway: the next verification pass says 0
        import trustme

        other = trustme.CA().issue_cert("mail.contoso.com")
        other.cert_chain_pems[0].write_to_path(str(fullchain))
        other.private_key_pem.write_to_path(str(key))
        clock.advance(timedelta(minutes=5))
        service.deployment.verify_all()
        seen = scrape(f"http://127.0.0.1:{port}/metrics")
        verified = {(s.labels["name"], s.labels["node"]): s.value for s in seen["certkeeper_deployment_verified"]}
        assert verified == {("mail", "cas01"): 0.0}
    finally:
        http.shutdown()
        http.server_close()


def test_metrics_default_loopback_address_stays_ipv4_loopback(tmp_path: Path) -> None:
    config = parse({}, data_dir=tmp_path / "data")
    service = Service.open(config)
    port = free_port()
    http = serve(f"127.0.0.1:{port}", service, DaemonState(), lambda: {"ok": True})
    try:
        assert http.server_address[0] == "127.0.0.1"
        assert "certkeeper_alerts_pending" in scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        http.shutdown()
        http.server_close()


# -- the pure part -------------------------------------------------------------------------------


def record(name: str, fingerprint: str | None, ready: str = "True") -> CertificateRecord:
    return CertificateRecord(name=name, issuer_name="le", issuer_kind="acme", ready=ready,  # type: ignore[arg-type]
                             fingerprint=fingerprint, not_after=NOW + timedelta(days=30))


def row(name: str, node: str, binding: str, served: str | None, minutes: int) -> DeploymentRecord:
    return DeploymentRecord(name=name, node=node, binding=binding, served_fingerprint=served,
                            updated_at=NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize(("rows", "expected"), [
    # the latest row per binding counts: an old mismatch that was fixed is verified
    ([row("a", "cas01", "gw", "old", 0), row("a", "cas01", "gw", "fa", 5)], {("a", "cas01"): True}),
    # one binding on the node serving something else makes the node 0
    ([row("a", "cas01", "gw", "fa", 0), row("a", "cas01", "iis", "zz", 0)], {("a", "cas01"): False}),
    # never verified (no served fingerprint) is 0, per node
    ([row("a", "cas01", "gw", None, 0), row("a", "cas02", "gw", "fa", 0)],
     {("a", "cas01"): False, ("a", "cas02"): True}),
    # a certificate without a current revision has no series
    ([row("b", "cas01", "gw", "fb", 0)], {}),
])
def test_deployment_verified(rows: list[DeploymentRecord], expected: dict[tuple[str, str], bool]) -> None:
    assert deployment_verified([record("a", "fa"), record("b", None, "Unknown")], rows) == expected


@pytest.mark.parametrize(("state", "has_certificate", "condition"), [
    (Health.READY, True, "True"), (Health.RENEWING, True, "True"), (Health.RENEWING, False, "Unknown"),
    (Health.MISSING, False, "False"), (Health.FAILING, True, "False"), (Health.FAILING, False, "False"),
    (Health.EXPIRING, True, "False"), (Health.EXPIRED, True, "False"),
])
def test_ready_condition(state: Health, has_certificate: bool, condition: str) -> None:
    assert ready_condition(state, has_certificate) == condition


def test_families_carry_one_sample_per_condition() -> None:
    out = {family.name: family for family in families([record("a", "fa", "Unknown")], [], DaemonRecord())}
    samples = [(s.labels["condition"], s.value) for s in out["certkeeper_certificate_ready_status"].samples]
    assert samples == [("True", 0.0), ("False", 0.0), ("Unknown", 1.0)]
