"""The daemon as a subprocess, on the wall clock: the real-time smoke test of one node.

It renews with no command given, alerts by email and Slack (once per event), refuses a second
daemon on the same SQLite store, serves metrics, catches up once after a suspend (SIGSTOP) rather
than once per missed run, exits 0 on SIGTERM and releases its lease. The daemon's decisions are
shown on a FrozenClock in tests/integration (leases, takeover, rollout, AD CS approval across a
restart); this file shows that the process wires them together.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.core import certkeeper_env, free_port, run_cli, to_toml
from tests.support import start_certkeeper, stop_process, wait_for

VALIDITY = 30  # seconds: the short certificate renews about 14 s after it is issued


def _old_certificate(path: Path) -> None:
    """Today's certificate on the gateway: from another CA, 10-day lifetime, 1 day left."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "legacy.contoso.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=9))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("legacy.contoso.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_daemon_renews_alerts_catches_up_once_and_stops_cleanly(
    tmp_path: Path, smtp_server: Any, http_stub: Any
) -> None:
    home = tmp_path
    metrics_port = free_port()
    config = {
        "issuers": {
            "short": {"type": "internal-ca", "validity_days": VALIDITY / 86400},
            # a CA that may only sign fabrikam.com: renewing legacy.contoso.com is refused
            "locked": {"type": "internal-ca", "name_constraints": ["fabrikam.com"]},
        },
        "certificates": [{"id": "short", "names": ["short.contoso.com"], "issuer": "short"}],
        "notifiers": {"mail": smtp_server.notifier_table(), "slack": http_stub.notifier_table("slack", "/slack")},
        # a pass every 1.2 s
        "daemon": {"reconcile_minutes": 0.02, "metrics_address": f"127.0.0.1:{metrics_port}", "node": "cas01"},
    }
    (home / "certkeeper.toml").write_text(to_toml(config))
    legacy = home / "legacy.pem"
    _old_certificate(legacy)
    env = certkeeper_env(CERTKEEPER_DATA_DIR=home / "data", CERTKEEPER_CONFIG=home / "certkeeper.toml")
    imported = run_cli("import", str(legacy), "--issuer", "locked", "--id", "legacy", env=env)
    assert imported.returncode == 0, imported.stderr

    log_path = home / "daemon.log"
    daemon = start_certkeeper("--debug", "daemon", env=env, log=log_path)

    def log() -> str:
        return log_path.read_text(errors="replace")

    def passes() -> int:
        return log().count("reconcile pass:")

    def slack_texts() -> list[str]:
        return [json.loads(r.body)["text"] for r in http_stub.requests if r.path == "/slack"]

    def mail_subjects() -> list[str]:
        return [str(m.message["Subject"]) for m in smtp_server.messages]

    try:
        wait_for(lambda: passes() >= 2, 60, what="two reconcile passes", context=lambda: log()[-3000:])

        # a suspend (SIGSTOP) over about five intervals; the certificate is not due before it ends
        daemon.send_signal(signal.SIGSTOP)
        time.sleep(6)
        before = passes()
        daemon.send_signal(signal.SIGCONT)
        # the first pass after the wake-up: the catch-up run at once, or, when the stop caught a
        # pass half-way (APScheduler then skips the catch-up as "maximum number of running
        # instances reached"), the next run on the grid, at most one interval later
        wait_for(lambda: passes() > before, 10, what="a pass after SIGCONT", context=lambda: log()[-3000:])
        time.sleep(0.5)
        # about five runs were missed: without coalescing they would all run back to back here;
        # coalesced, there is one (and at most one regular run on the grid right behind it)
        assert 1 <= passes() - before <= 2, log()[-3000:]

        # a second daemon on the same SQLite store is refused with a clear message
        second = run_cli("daemon", env=env, timeout=60)
        assert second.returncode == 1 and "another certkeeper daemon" in second.stderr, second.stderr

        wait_for(lambda: any("renewed: short" in t for t in slack_texts()), 60,
                 what="the renewed alert on Slack", context=lambda: log()[-3000:])
        wait_for(lambda: any("renewed: short" in s for s in mail_subjects()), 30,
                 what="the renewed alert by email")
        assert any("expiring: legacy" in t for t in slack_texts()), slack_texts()
        assert any("expiring: legacy" in s for s in mail_subjects()), mail_subjects()
        assert any("rejected: legacy" in t for t in slack_texts()), slack_texts()
        assert any("issued: short" in t for t in slack_texts()), slack_texts()
        # a healthy certificate renewed on time raises no expiring alert
        assert not any("expiring: short" in t for t in slack_texts()), slack_texts()
        # one alert per event per certificate per threshold: nothing is sent twice
        assert len(slack_texts()) == len(set(slack_texts())), slack_texts()

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert ('certkeeper_certificate_expiration_timestamp_seconds{issuer_kind="internal-ca",issuer_name="short",'
                'name="short"}') in metrics
        assert ('certkeeper_certificate_ready_status{condition="True",issuer_kind="internal-ca",issuer_name="short",'
                'name="short"} 1.0') in metrics
        assert 'certkeeper_certificate_not_before_timestamp_seconds{issuer_kind="internal-ca"' in metrics
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).read())
        assert health["ok"] is True and health["node"] == "cas01"

        listed = json.loads(run_cli("list", "--json", env=env).stdout)
        short = next(row for row in listed if row["id"] == "short")
        assert short["revision"] >= 2
    finally:
        daemon.send_signal(signal.SIGCONT)
        code = stop_process(daemon)
    output = log()
    assert code == 0, output[-3000:]
    assert "daemon stopped" in output
    # no key material anywhere in the log, not even in SQLAlchemy's statements at --debug (keys
    # are sealed); and no PEM at all outside those statements (whose parameters hold the CSRs and
    # certificates being stored)
    assert "PRIVATE KEY" not in output
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )", output)

    def from_sqlalchemy(record: str) -> bool:  # "date time,ms LEVEL logger: message"
        return record.split(" ", 4)[3:4] == ["sqlalchemy.engine.Engine:"]

    assert any(from_sqlalchemy(record) for record in records)
    assert not [record for record in records if not from_sqlalchemy(record) and "-----BEGIN" in record]
    # the lease is released: a new daemon may start at once
    again = run_cli("daemon", "--once", env=env, timeout=60)
    assert "another certkeeper daemon" not in again.stderr


def test_under_systemd_the_daemon_says_ready_then_alive_then_stopping(tmp_path: Path) -> None:
    """Type=notify as systemd runs it: $NOTIFY_SOCKET names a datagram socket (here ours),
    $WATCHDOG_USEC the watchdog interval; READY=1 after the start, WATCHDOG=1 from the heartbeat
    (at least every half interval), STOPPING=1 on SIGTERM, exit 0."""
    import socket

    home = tmp_path
    (home / "certkeeper.toml").write_text(to_toml({"daemon": {"metrics_address": f"127.0.0.1:{free_port()}"}}))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(home / "notify.sock"))
    sock.settimeout(60)
    env = certkeeper_env(CERTKEEPER_DATA_DIR=home / "data", CERTKEEPER_CONFIG=home / "certkeeper.toml",
                         NOTIFY_SOCKET=home / "notify.sock", WATCHDOG_USEC="2000000")
    daemon = start_certkeeper("daemon", env=env, log=home / "daemon.log")
    try:
        ready = sock.recv(4096)
        assert ready.split(b"\n")[0] == b"READY=1", ready
        started = time.monotonic()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert time.monotonic() - started < 4  # every second: half of the 2 s interval
        daemon.send_signal(signal.SIGTERM)
        messages = []
        while not messages or not messages[-1].startswith(b"STOPPING=1"):
            messages.append(sock.recv(4096))
        assert set(messages[:-1]) <= {b"WATCHDOG=1"}, messages
        assert stop_process(daemon, terminate=False) == 0, (home / "daemon.log").read_text()[-2000:]
    finally:
        if daemon.poll() is None:
            stop_process(daemon)
        sock.close()
