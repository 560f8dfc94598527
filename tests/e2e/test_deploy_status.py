"""Issue, deploy to a real nginx through the files binder, and `status` reports what is served;
a renewal is deployed unattended by `renew`; a failing reload rolls back and alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.core import to_toml


def _config(home: Path, gateway: Any, **binding: Any) -> None:
    table = {
        "type": "files", "fullchain": str(gateway.fullchain), "key": str(gateway.key),
        "reload": gateway.reload_argv, "verify": [gateway.endpoint], "settle_seconds": 5,
    }
    table.update(binding)
    config = {"certificates": [{"id": "outlook", "names": ["mail.contoso.com", "autodiscover.contoso.com"],
                                "bindings": [table]}]}
    (home / "certkeeper.toml").write_text(to_toml(config))


def test_issue_deploy_and_status_reports_the_served_fingerprint(ck, home: Path, nginx_gateway: Any) -> None:
    _config(home, nginx_gateway)
    issued = ck("issue", "--id", "outlook", "mail.contoso.com", "autodiscover.contoso.com", "--json")
    assert issued.code == 0, issued
    fingerprint = json.loads(issued.out)["fingerprint"]

    deployed = ck("deploy")
    assert deployed.code == 0, deployed
    assert "deployed" in deployed.out
    # nginx's old worker may still accept a connection or two with the old certificate after the
    # reload (the deploy's verification waited for the new one); what follows connects many times
    nginx_gateway.settle()

    status = json.loads(ck("status", "--json").out)
    cert = status["certificates"][0]
    assert cert["fingerprint"] == fingerprint
    [deployment] = cert["deployments"]
    assert deployment["served_fingerprint"] == fingerprint
    assert deployment["serves_current"] is True and deployment["state"] == "verified"
    text = ck("status").out
    assert "serves current" in text

    # check agrees: the gateway serves the certificate for both names
    ca = home / "root.pem"
    assert ck("ca", "export", "--out", str(ca)).code == 0
    checked = ck("check", "https://mail.contoso.com", "--connect", nginx_gateway.endpoint, "--ca-file", str(ca),
                 "--principal", "msstd:mail.contoso.com", "--json")
    assert checked.code == 0, [item for item in json.loads(checked.out)["items"] if item["status"] != "pass"]

    # a forced renewal is deployed and verified by `renew`, with no separate deploy step
    renewed = ck("renew", "outlook", "--force", "--json")
    assert renewed.code == 0, renewed
    result = json.loads(renewed.out)
    assert result["deployed"] == ["outlook/files#0"], result
    new_fp = result["issued"][0]["fingerprint"]
    status = json.loads(ck("status", "--json").out)
    assert status["certificates"][0]["deployments"][0]["served_fingerprint"] == new_fp != fingerprint


def test_failing_reload_rolls_back_and_the_old_certificate_stays_served(ck, home: Path,
                                                                         nginx_gateway: Any) -> None:
    _config(home, nginx_gateway)
    assert ck("issue", "--id", "outlook", "mail.contoso.com", "autodiscover.contoso.com").code == 0
    assert ck("deploy").code == 0
    first = json.loads(ck("status", "--json").out)["certificates"][0]["fingerprint"]

    _config(home, nginx_gateway, reload=["/bin/false"])
    nginx_gateway.settle()
    renewed = ck("renew", "outlook", "--force", "--json")
    assert renewed.code == 1, renewed
    result = json.loads(renewed.out)
    assert "outlook/files#0" in result["deploy_failed"]
    assert "restored" in result["deploy_failed"]["outlook/files#0"]
    status = json.loads(ck("status", "--json").out)["certificates"][0]
    # the new revision is stored but the gateway still serves (and is recorded serving) the first one
    assert status["fingerprint"] != first
    served = {d["state"]: d["served_fingerprint"] for d in status["deployments"]}
    assert served.get("failed") in (None, first)
    # what nginx really serves: the first certificate
    import hashlib
    import ssl

    host, port = nginx_gateway.endpoint.split(":")
    served_der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
    assert hashlib.sha256(served_der).hexdigest() == first

    shown = json.loads(ck("show", "outlook", "--json").out)
    assert any(e["kind"] == "deploy_failed" for e in shown["events"])
