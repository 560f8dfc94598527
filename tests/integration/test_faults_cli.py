"""Faults and bad input at the CLI (issue 10): one readable line and exit 1, nothing lost; commands
that only read keep answering on a full or read-only disk; one certificate per set of names."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.core import free_port, run_cli, to_toml

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def one_line_error(result: Any) -> str:
    """The single `error:` line of a failed command; fails the test on a traceback or extra output."""
    assert result.code == 1, result
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return str(lines[0])


# -- the disk under the store ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only: mounting needs CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full or read-only disk needs a tmpfs mount: run as root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_reading_commands_answer_on_a_full_or_read_only_disk(
    ck: Any, home: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("CERTKEEPER_DATA_DIR", str(small_disk / "data"))
    # set up in other processes, so no file on the disk stays open (a read-only remount needs that)
    assert run_cli("issue", *NAMES).returncode == 0
    before = run_cli("show", "mail.contoso.com", "--json")
    if how == "full":
        _fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    listed = ck("list", "--json")
    assert listed.code == 0, listed
    assert [row["id"] for row in json.loads(listed.out)] == ["mail.contoso.com"]
    shown = ck("show", "mail.contoso.com", "--json")
    assert shown.code == 0 and json.loads(shown.out)["current"] == json.loads(before.stdout)["current"]
    assert ck("status").code == 0
    exported = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(home / "out.pem"))
    assert exported.code == 0, exported
    assert b"PRIVATE KEY" in (home / "out.pem").read_bytes()
    assert "not in `show`'s events" in exported.err
    # a command that must write says why it cannot, in one line, and nothing stored is lost
    failed = ck("issue", "owa.contoso.com")
    line = one_line_error(failed)
    assert ("disk" in line and ("full" in line or "free space" in line)) or "read-only" in line, line
    again = ck("show", "mail.contoso.com", "--json")
    assert json.loads(again.out)["current"] == json.loads(before.stdout)["current"]


def test_a_store_locked_longer_than_the_busy_timeout_is_one_line(ck: Any, home: Path) -> None:
    (home / "certkeeper.toml").write_text("[store]\nbusy_timeout_seconds = 0.3\n")
    assert ck("issue", *NAMES).code == 0
    holder = sqlite3.connect(home / "data" / "certkeeper.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        line = one_line_error(ck("issue", "owa.contoso.com"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process" in line and "busy_timeout_seconds" in line
    assert ck("issue", "owa.contoso.com").code == 0  # once the lock is gone it works


def test_an_unreachable_postgresql_store_is_one_line(ck: Any, home: Path) -> None:
    port = free_port()
    (home / "certkeeper.toml").write_text(
        f'[store]\nurl = "postgresql+psycopg://certkeeper@127.0.0.1:{port}/certkeeper?connect_timeout=2"\n'
    )
    line = one_line_error(ck("list"))
    assert "cannot reach the store's database server" in line and "refused" in line, line


def test_the_daemon_logs_one_line_per_pass_when_the_store_is_down(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from certkeeper import config as config_module
    from certkeeper.daemon import Daemon
    from certkeeper.store import db

    (home / "certkeeper.toml").write_text(to_toml({"certificates": [{"id": "mail", "names": list(NAMES)}]}))
    daemon = Daemon(config_module.load(), node="cas01")
    try:
        down = db.make_engine(f"postgresql+psycopg://certkeeper@127.0.0.1:{free_port()}/x?connect_timeout=1")
        daemon.service.store.engine = down
        with caplog.at_level(logging.INFO):
            daemon.reconcile()
            daemon.deliver_alerts()
            daemon.verify()
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert len(errors) == 3, [record.getMessage() for record in errors]
        for record in errors:
            assert record.exc_info is None and "cannot reach the store's database server" in record.getMessage()
        assert daemon.state.last_reconcile_errors == -1
    finally:
        daemon.service.close()


# -- bad config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'[[certificates]]\nid = "caf\xe9"\nnames = ["mail.contoso.com"]\n', "is not UTF-8 text (byte 0xe9"),
        (b'[[certificates]]\nid = "m"\nnames = ["mail.contoso.com"]\nrenew_before_days = 1e300\n',
         "certificates[0].renew_before_days"),
        (b"[daemon]\nreconcile_minutes = 99999999999999999999999\n", "daemon.reconcile_minutes"),
        (b"[store]\nrevision_retention_days = 1e308\n", "store.revision_retention_days"),
        (b"[alerts]\nexpiring_days = [7, 1e309]\n", "alerts.expiring_days"),
        (b"[issuers.internal]\ntype = \"internal-ca\"\nvalidity_days = 1e12\n", "validity_days"),
    ],
    ids=["latin-1", "huge-float", "huge-int", "huge-retention", "infinite", "huge-validity"],
)
def test_a_config_that_cannot_be_used_is_one_line_naming_where(
    ck: Any, home: Path, content: bytes, expected: str
) -> None:
    (home / "certkeeper.toml").write_bytes(content)
    result = ck("issue", "mail.contoso.com")
    assert expected in one_line_error(result)


# -- one certificate per set of names ------------------------------------------------------------


def test_issue_without_names_after_init_issues_the_configured_certificate(ck: Any, home: Path) -> None:
    assert ck("init").code == 0
    first = ck("issue", "--json")
    assert first.code == 0, first
    assert json.loads(first.out)["certificate_id"] == "outlook"
    # the configured names, in any spelling, mean the same certificate
    again = ck("issue", "--json", "AUTODISCOVER.contoso.com.", "mail.contoso.com")
    assert again.code == 0, again
    assert (json.loads(again.out)["certificate_id"], json.loads(again.out)["revision"]) == ("outlook", 2)
    assert [row["id"] for row in json.loads(ck("list", "--json").out)] == ["outlook"]
    # names that another certificate already has are refused, naming it ...
    line = one_line_error(ck("issue", "mail.contoso.com"))
    assert "'outlook'" in line and "--id" in line
    # ... unless --id asks for a second certificate on purpose
    second = ck("issue", "mail.contoso.com", "--id", "mail-only", "--json")
    assert second.code == 0 and json.loads(second.out)["certificate_id"] == "mail-only"
    # renew keeps each once
    assert sorted(row["id"] for row in json.loads(ck("list", "--json").out)) == ["mail-only", "outlook"]


def test_issue_with_a_certificate_id_as_its_name_never_renames_that_certificate(ck: Any, home: Path) -> None:
    (home / "certkeeper.toml").write_text(to_toml({"certificates": [
        {"id": "status", "names": ["cas01.contoso.com"]}]}))
    assert ck("renew").code == 0

    # `issue status` reads "status" as a (single-label, intranet) host name, whose id is "status"
    line = one_line_error(ck("issue", "status"))

    assert "'status' is the id of the certificate for cas01.contoso.com" in line
    assert "certkeeper renew status --force" in line and "--id" in line
    row = json.loads(ck("show", "status", "--json").out)
    assert row["names"] == ["cas01.contoso.com"] and row["current"]["revision"] == 1
    # asked for on purpose, under a new id, that name gets its own certificate
    other = ck("issue", "status", "--id", "status-host", "--json")
    assert other.code == 0 and json.loads(other.out)["certificate_id"] == "status-host"


def test_a_certificate_removed_from_the_config_is_kept_but_no_longer_deployed(ck: Any, home: Path) -> None:
    out = home / "tls"
    bindings = [{"type": "files", "fullchain": str(out / "owa.pem"), "key": str(out / "owa.key")}]
    config: dict[str, Any] = {"certificates": [
        {"id": "owa", "names": ["owa.contoso.com"], "bindings": bindings},
        {"id": "mail", "names": ["mail.contoso.com"],
         "bindings": [{"type": "files", "fullchain": str(out / "mail.pem"), "key": str(out / "mail.key")}]},
    ]}
    (home / "certkeeper.toml").write_text(to_toml(config))
    assert ck("renew").code == 0
    served = (out / "owa.pem").read_bytes()
    config["certificates"] = config["certificates"][1:]
    (home / "certkeeper.toml").write_text(to_toml(config))
    listed = ck("list", "--json")
    rows = {row["id"]: row for row in json.loads(listed.out)}
    assert rows["owa"]["in_config"] is False and rows["mail"]["in_config"] is True
    assert "Not in the config any more" in ck("list").out
    (out / "owa.pem").unlink()
    assert ck("renew", "--force").code == 0
    assert not (out / "owa.pem").exists()  # not deployed again
    assert ck("deploy", "--force").code == 0
    assert not (out / "owa.pem").exists()
    assert served  # (it was deployed while configured)


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        ({"type": "files", "fullchain": "/tmp/x.pem", "key": "/tmp/x.key", "relaod": "nginx -s reload"},
         "certificates[0].bindings[0]: relaod"),
        ({"type": "nginx", "fullchain": "/tmp/x.pem"}, "certificates[0].bindings[0]: unknown binding type 'nginx'"),
    ],
    ids=["typo", "unknown-type"],
)
def test_a_binding_typo_is_a_config_error_before_anything_is_issued(
    ck: Any, home: Path, binding: dict[str, Any], expected: str
) -> None:
    (home / "certkeeper.toml").write_text(to_toml({"certificates": [
        {"id": "mail", "names": ["mail.contoso.com"], "bindings": [binding]}]}))
    assert expected in one_line_error(ck("renew"))
    database = home / "data" / "certkeeper.db"
    if database.exists():  # nothing was put under management, let alone issued
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT count(*) FROM certificates").fetchone() == (0,)


def test_an_unreachable_ca_is_one_line_saying_why(ck: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    (home / "certkeeper.toml").write_text(to_toml({"issuers": {
        "le": {"type": "acme", "directory": f"https://127.0.0.1:{port}/dir", "contact": ["mailto:a@contoso.com"],
               "agree_tos": True, "public_names_only": False},
        "corp": {"type": "adcs", "url": f"https://127.0.0.1:{port}/certsrv", "template": "WebServer",
                 "username": "svc@contoso.com", "password": "env:CK_TEST_PASSWORD"}}}))
    monkeypatch.setenv("CK_TEST_PASSWORD", "not-used")
    acme = one_line_error(ck("issue", "mail.contoso.com", "--issuer", "le"))
    adcs = one_line_error(ck("issue", "owa.contoso.com", "--issuer", "corp"))
    assert acme == (f"error: ACME directory: cannot reach the ACME server at https://127.0.0.1:{port}/dir: "
                    "connection refused")
    assert adcs.startswith(f"error: cannot reach AD CS at https://127.0.0.1:{port}/certsrv: connection refused")
    assert "HTTPSConnectionPool" not in acme + adcs
