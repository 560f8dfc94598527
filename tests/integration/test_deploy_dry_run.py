"""`certkeeper deploy oa --dry-run --json`: the exact PowerShell per binding and server, nothing run.

Must show (#12): an exchange binding with version = "2010", two servers and hybrid = true - every
script parses, none needs PowerShell 3.0, and the hybrid update is there. Nothing reaches a
server: the servers' names do not resolve here, and a run would fail on the first connection.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certkeeper.binders.powershell import ExchangeVersion
from tests.fixtures.core import to_toml
from tests.fixtures.powershell_syntax import commands, problems

SERVERS = ["ex01.contoso.com", "ex02.contoso.com"]


def _config(home: Path, version: str, **extra: Any) -> None:
    binding = {
        "type": "exchange",
        "name": "oa",
        "version": version,
        "servers": [
            {"name": SERVERS[0], "verify": ["10.0.0.11:443"]},
            {"name": SERVERS[1], "verify": ["10.0.0.12:443"]},
        ],
        "username": "svc-certkeeper@CONTOSO.COM",
        "services": ["IIS", "SMTP"],
        "smtp_replace_default": True,
        "hybrid": True,
        **extra,
    }
    config = {
        "certificates": [{"id": "oa", "names": ["mail.contoso.com", "autodiscover.contoso.com"], "bindings": [binding]}]
    }
    (home / "certkeeper.toml").write_text(to_toml(config))


def _served_then_renewed(ck: Any, home: Path) -> None:
    """Revision 1 served on binding oa (as a real deploy would record it), revision 2 issued."""
    assert ck("issue", "--id", "oa", "mail.contoso.com", "autodiscover.contoso.com").code == 0
    from certkeeper import config as config_module
    from certkeeper.service import Service
    from certkeeper.store import revisions
    from certkeeper.store.tables import deployments

    service = Service.open(config_module.load(str(home / "certkeeper.toml")))
    with service.store.session() as session:
        first = revisions.current(session, "oa")
        assert first is not None
        session.execute(
            deployments.insert().values(
                certificate_id="oa",
                revision_id=first.id,
                binding="oa",
                node="",
                state="verified",
                attempts=1,
                details={},
                updated_at=datetime.now(UTC),
            )
        )
    assert service.issuance.issue_certificate("oa", reason="renewal") is not None


@pytest.mark.parametrize("version", [v.value for v in ExchangeVersion])
def test_dry_run_json_every_script_parses_for_its_version(ck: Any, home: Path, version: str) -> None:
    _config(home, version)
    _served_then_renewed(ck, home)

    result = ck("deploy", "oa", "--dry-run", "--json")
    assert result.code == 0, result
    steps = json.loads(result.out)["steps"]
    assert {s["server"] for s in steps} == set(SERVERS)
    assert all(set(s) == {"binding", "server", "step", "endpoint", "script"} for s in steps)
    for step in steps:
        if step["endpoint"] != "certkeeper":  # the TLS probe is not PowerShell
            assert problems(step["script"], ExchangeVersion(version).powershell) == [], step["script"]
    names = [s["step"] for s in steps]
    # import and enable on each server, in order, before the hybrid update and the removal
    for server in SERVERS:
        mine = [s["step"] for s in steps if s["server"] == server]
        assert mine.index("import") < mine.index("enable") < mine.index("verify")
    assert names.index("hybrid-configuration") > max(i for i, n in enumerate(names) if n == "verify")
    assert names.index("hybrid-configuration") < names.index("retire")
    text = result.out
    assert "<redacted>" in text
    # the secrets: the PFX password is never printed, the PFX bytes neither
    imported = next(s for s in steps if s["step"] == "import")["script"]
    assert "$Password = ConvertTo-SecureString -String '<redacted>' -AsPlainText -Force" in imported
    assert "$FileData = [Convert]::FromBase64String('<redacted>')" in imported


def test_must_show_2010_two_servers_hybrid(ck: Any, home: Path) -> None:
    _config(home, "2010")
    _served_then_renewed(ck, home)
    result = ck("deploy", "oa", "--dry-run", "--json")
    assert result.code == 0, result
    steps = json.loads(result.out)["steps"]
    for step in steps:
        if step["endpoint"] != "certkeeper":
            assert problems(step["script"], "2.0") == [], step["script"]  # nothing needs PowerShell 3.0
    called = [name for s in steps if s["endpoint"] != "certkeeper" for name in commands(s["script"])]
    assert "Add-PSSnapin" not in called and "ConvertFrom-Json" not in called
    # the hybrid update: Exchange 2010 names the certificate by thumbprint in the hybrid
    # configuration, and picks the connectors' certificate by their FQDN (checked first)
    update = next(s for s in steps if s["step"] == "hybrid-configuration")["script"]
    assert "Set-HybridConfiguration -SecureMailCertificateThumbprint '" in update and "-ErrorAction 'Stop'" in update
    checks = [s for s in steps if s["step"] == "connector-check"]
    assert {s["server"] for s in checks} == set(SERVERS)
    assert any("Get-SendConnector" in s["script"] for s in checks)
    enable = [s["script"] for s in steps if s["step"] == "enable"]
    assert len(enable) == 2 and all(
        "-Services 'IIS,SMTP' -Force -DoNotRequireSsl:$DoNotRequireSsl" in e for e in enable
    )


def test_dry_run_for_2019_updates_the_connectors(ck: Any, home: Path) -> None:
    _config(home, "2019")
    _served_then_renewed(ck, home)
    steps = json.loads(ck("deploy", "oa", "--dry-run", "--json").out)["steps"]
    scripts = {s["step"]: s["script"] for s in steps}
    assert "Set-SendConnector -Identity $Identity -TlsCertificateName $TlsCertificateName" in scripts["send-connector"]
    assert "Set-ReceiveConnector -Identity $Identity" in scripts["receive-connector"]
    assert "Set-HybridConfiguration -TlsCertificateName $TlsCertificateName" in scripts["hybrid-configuration"]
    text = ck("deploy", "oa", "--dry-run")
    assert text.code == 0 and "send-connector" in text.out and "<redacted>" in text.out


def test_doctor_cli_says_what_is_missing_without_reaching_a_server(ck: Any, home: Path) -> None:
    """On a machine without gssapi the doctor fails on the Kerberos line and on the first read,
    before any connection (the servers' names do not resolve here)."""
    pytest.importorskip("tree_sitter")  # the test extra, as everywhere here
    try:
        import gssapi  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - a machine with the kerberos extra
        pytest.skip("gssapi is installed: the doctor would try the network")
    _config(home, "2019")
    assert ck("issue", "--id", "oa", "mail.contoso.com", "autodiscover.contoso.com").code == 0
    result = ck("doctor", "--server", SERVERS[0], "--json")
    assert result.code == 1, result
    checks = json.loads(result.out)["checks"]
    assert checks[0]["check"] == "kerberos" and "pip install 'certkeeper[kerberos]'" in checks[0]["message"]
    assert [c["server"] for c in checks[1:]] == [SERVERS[0]]  # --server: only that one
    assert checks[1]["check"] == "read Get-ExchangeServer" and "Kerberos is not available" in checks[1]["message"]


def test_daemon_start_up_check_names_the_missing_kerberos_library(ck: Any, home: Path) -> None:
    try:
        import gssapi  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - a machine with the kerberos extra
        pytest.skip("gssapi is installed")
    _config(home, "2016")
    result = ck("daemon", "--once")
    assert result.code == 1, result
    assert "exchange binding(s) oa use Kerberos, and this machine lacks the Python gssapi library" in result.err
    _config(home, "2016", runner="local", servers=[{"name": SERVERS[0], "verify": ["10.0.0.11:443"]}])
    assert startup_ok(home)


def startup_ok(home: Path) -> bool:
    from certkeeper import config as config_module
    from certkeeper.binders.exchange.doctor import startup_problems

    loaded = config_module.load(str(home / "certkeeper.toml"))
    return startup_problems([b.model_dump() for c in loaded.settings.certificates for b in c.bindings]) == []
