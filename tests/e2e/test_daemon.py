"""The daemon as a subprocess: renews with no command given, alerts by email and Slack, refuses a
second daemon on the same SQLite store, serves metrics, exits 0 on SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.core import REPO_ROOT, free_port, run_cli, to_toml


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO_ROOT), "CERTKEEPER_DATA_DIR": str(home / "data"),
                "CERTKEEPER_CONFIG": str(home / "certkeeper.toml")})
    return env


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


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_renews_alerts_and_stops_cleanly(tmp_path: Path, smtp_server: Any, http_stub: Any) -> None:
    home = tmp_path
    metrics_port = free_port()
    config = {
        "issuers": {
            "short": {"type": "internal-ca", "validity_days": 40 / 86400},  # 40-second certificates
            # a CA that may only sign fabrikam.com: renewing legacy.contoso.com is refused
            "locked": {"type": "internal-ca", "name_constraints": ["fabrikam.com"]},
        },
        "certificates": [{"id": "short", "names": ["short.contoso.com"], "issuer": "short"}],
        "notifiers": {"mail": smtp_server.notifier_table(), "slack": http_stub.notifier_table("slack", "/slack")},
        "daemon": {"reconcile_minutes": 0.05, "metrics_address": f"127.0.0.1:{metrics_port}", "node": "cas01"},
    }
    (home / "certkeeper.toml").write_text(to_toml(config))
    legacy = home / "legacy.pem"
    _old_certificate(legacy)
    env = _env(home)
    imported = run_cli("import", str(legacy), "--issuer", "locked", "--id", "legacy", env=env)
    assert imported.returncode == 0, imported.stderr

    log = (home / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "certkeeper", "daemon"], env=env, cwd=REPO_ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        def slack_texts() -> list[str]:
            return [json.loads(r.body)["text"] for r in http_stub.requests if r.path == "/slack"]

        def mail_subjects() -> list[str]:
            return [str(m.message["Subject"]) for m in smtp_server.messages]

        _wait(lambda: any("renewed: short" in t for t in slack_texts()), 90, "the renewed alert on Slack")
        _wait(lambda: any("renewed: short" in s for s in mail_subjects()), 30, "the renewed alert by email")
        assert any("expiring: legacy" in t for t in slack_texts()), slack_texts()
        assert any("expiring: legacy" in s for s in mail_subjects()), mail_subjects()
        assert any("rejected: legacy" in t for t in slack_texts()), slack_texts()
        assert any("issued: short" in t for t in slack_texts()), slack_texts()
        # a healthy certificate renewed on time raises no expiring alert
        assert not any("expiring: short" in t for t in slack_texts()), slack_texts()

        # one alert per event per certificate per threshold: nothing is sent twice
        assert len(slack_texts()) == len(set(slack_texts())), slack_texts()

        # a second daemon on the same SQLite store is refused with a clear message
        second = run_cli("daemon", env=env, timeout=60)
        assert second.returncode == 1 and "another certkeeper daemon" in second.stderr, second.stderr

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
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        log.close()
    output = (home / "daemon.log").read_text()
    assert code == 0, output
    assert "daemon stopped" in output
    assert "BEGIN" not in output and "PRIVATE KEY" not in output
    # the lease is released: a new daemon may start at once
    again = run_cli("daemon", "--once", env=env, timeout=60)
    assert "another certkeeper daemon" not in again.stderr


def test_after_a_suspend_each_job_catches_up_once(tmp_path: Path) -> None:
    """SIGSTOP for several reconcile intervals, then SIGCONT: one catch-up pass, not one per missed run."""
    home = tmp_path
    config = {"daemon": {"reconcile_minutes": 0.02, "metrics_address": f"127.0.0.1:{free_port()}"}}
    (home / "certkeeper.toml").write_text(to_toml(config))
    env = _env(home)
    log_path = home / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "certkeeper", "--debug", "daemon"], env=env,
                                  cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: log_path.read_text().count("reconcile pass:") >= 2, 60, "two reconcile passes")
        daemon.send_signal(signal.SIGSTOP)
        time.sleep(8)  # about seven intervals of 1.2 s are missed
        before = log_path.read_text().count("reconcile pass:")
        daemon.send_signal(signal.SIGCONT)
        # the first pass after the wake-up: the catch-up run at once, or, when the stop caught a
        # pass half-way (APScheduler then skips the catch-up as "maximum number of running
        # instances reached"), the next run on the grid, at most one interval later
        _wait(lambda: log_path.read_text().count("reconcile pass:") > before, 10, "a pass after SIGCONT")
        time.sleep(0.5)
        after = log_path.read_text().count("reconcile pass:")
        # about six runs were missed: without coalescing they would all run back to back here;
        # coalesced, there is one (and at most one regular run on the grid right behind it)
        assert 1 <= after - before <= 2, log_path.read_text()[-3000:]
    finally:
        daemon.send_signal(signal.SIGCONT)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


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
    env = _env(home) | {"NOTIFY_SOCKET": str(home / "notify.sock"), "WATCHDOG_USEC": "2000000"}
    with (home / "daemon.log").open("w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "certkeeper", "daemon"], env=env, cwd=REPO_ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
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
        assert daemon.wait(timeout=60) == 0, (home / "daemon.log").read_text()[-2000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        sock.close()
