"""`certkeeper status` names the config file and the store in use, and creates neither.

As root on Linux with no environment, they are /etc/certkeeper/certkeeper.toml and
/var/lib/certkeeper: checked by running the CLI in a subprocess, with the two folders verified absent
before and after (the test skips on a machine where certkeeper is installed for real).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures.core import run_cli

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def test_status_names_config_and_store_and_creates_no_store(ck, home: Path) -> None:
    before = ck("status", "--json")
    assert before.code == 0, before
    where = json.loads(before.out)
    assert where["config"] == {"path": str(home / "certkeeper.toml"), "exists": False, "from": "$CERTKEEPER_CONFIG"}
    db = home / "data" / "certkeeper.db"
    assert where["store"] == {"url": f"sqlite:///{db}", "data_dir": str(home / "data"),
                              "data_dir_from": "$CERTKEEPER_DATA_DIR", "path": str(db), "exists": False}
    assert where["certificates"] == []
    assert not (home / "data").exists()  # a reading command made no store (nor a key)
    text = ck("status")
    assert text.code == 0 and f"No store at {db} yet" in text.out, text
    assert f"Config: {home / 'certkeeper.toml'} (not found: defaults in use)" in text.out

    assert ck("issue", *NAMES).code == 0
    (home / "certkeeper.toml").write_text("[daemon]\nreconcile_minutes = 5\n")
    after = json.loads(ck("status", "--json").out)
    assert after["config"]["exists"] is True and after["store"]["exists"] is True
    assert [cert["id"] for cert in after["certificates"]] == ["mail.contoso.com"]
    text = ck("status").out
    assert text.startswith(f"Config: {home / 'certkeeper.toml'} [$CERTKEEPER_CONFIG]\nStore: sqlite:///{db} "
                           f"[data folder {home / 'data'}: $CERTKEEPER_DATA_DIR]\n")


def test_status_hides_the_store_password(ck, home: Path) -> None:
    (home / "certkeeper.toml").write_text(
        '[store]\nurl = "postgresql+psycopg://certkeeper:hunter2@127.0.0.1:1/certkeeper"\n')
    result = ck("status", "--json")
    # the server is not reachable: the command fails, but never shows the password
    assert "hunter2" not in result.out + result.err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (the root branch of the rule)")
def test_as_root_with_no_environment_the_machine_locations_are_used(tmp_path: Path) -> None:
    system = [Path("/etc/certkeeper"), Path("/var/lib/certkeeper")]
    if any(path.exists() for path in system):
        pytest.skip("certkeeper is installed on this machine (/etc/certkeeper or /var/lib/certkeeper exists): "
                    "not touching a real installation")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CERTKEEPER_", "XDG_"))}
    env["HOME"] = str(tmp_path)
    try:
        done = run_cli("status", "--json", env=env, replace_env=True)
        assert done.returncode == 0, done.stderr
        where = json.loads(done.stdout)
        assert where["config"] == {"path": "/etc/certkeeper/certkeeper.toml", "exists": False,
                                   "from": "machine default"}
        assert where["store"]["data_dir"] == "/var/lib/certkeeper"
        assert where["store"]["url"] == "sqlite:////var/lib/certkeeper/certkeeper.db"
        assert where["store"]["exists"] is False
        assert not any(path.exists() for path in system), "status created a system folder"
        assert not list(tmp_path.iterdir()), "status wrote into the (temporary) home folder"
    finally:
        for path in system:  # only if this test made them: they did not exist before
            if path.exists():
                shutil.rmtree(path)


def test_dpapi_on_linux_is_one_clear_line_and_nothing_is_created(ck, home: Path) -> None:
    (home / "certkeeper.toml").write_text('[store]\nsecret_key_protection = "dpapi"\n')
    result = ck("issue", *NAMES)
    assert result.code == 1
    assert result.err.startswith('error: [store] secret_key_protection = "dpapi": dpapi is Windows only'), result
    assert not (home / "data" / "secret.key").exists()


@pytest.mark.parametrize(("daemon", "line", "guards"), [
    ({}, "Daemon: http://127.0.0.1:9464/ (status page, /metrics, /healthz; this machine only)", ["loopback"]),
    ({"metrics_address": "0.0.0.0:9464", "status_page": False},
     "Daemon: http://0.0.0.0:9464/ (/metrics, /healthz (no status page))", []),
    ({"metrics_address": "0.0.0.0:9464", "status_token": "env:STATUS_TOKEN"},
     "Daemon: http://0.0.0.0:9464/ (status page, /metrics, /healthz; status token)", ["token"]),
    ({"metrics_address": "[::]:9464", "tls_certificate": "status", "client_ca_file": "users.cer",
      "client_names": ["alice@contoso.com"]},
     "Daemon: https://[::]:9464/ (status page, /metrics, /healthz; certificate status; client certificates "
     "from users.cer naming alice@contoso.com)", ["client-certificate"]),
    ({"metrics_address": ""}, "Daemon: no HTTP server ([daemon] metrics_address is empty)", []),
])
def test_status_says_where_the_daemon_answers_and_who_may_read_its_page(
        ck, home: Path, daemon: dict[str, object], line: str, guards: list[str]) -> None:
    from tests.fixtures.core import to_toml

    (home / "certkeeper.toml").write_text(to_toml({"daemon": daemon}))
    text = ck("status")
    assert text.code == 0, text
    assert line in text.out.splitlines()
    where = json.loads(ck("status", "--json").out)
    assert where["daemon"]["guards"] == guards
