"""`certkeeper check` judging like Outlook, against real nginx on loopback configured per case:
the 401 offers only NTLM or only Basic, rpcproxy answers 404, Autodiscover lives only on the
domain root, and an SRV record served by a local DNS server (dnspython) points Outlook on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from certkeeper.outlook.checker import Status, check
from tests.fixtures.core import run_cli
from tests.fixtures.dns_server import DnsServer
from tests.fixtures.gateways import NginxGateway, TestPKI, _stop, start_nginx

pytestmark = pytest.mark.e2e

URL = "https://mail.contoso.test/rpc/rpcproxy.dll"
NAMES = ("mail.contoso.test", "contoso.test", "autodiscover.contoso.test")


def challenge(path: str, *schemes: str, status: int = 401) -> str:
    headers = "".join(f"            add_header WWW-Authenticate '{s}' always;\n" for s in schemes)
    return f"        location = {path} {{\n{headers}            return {status};\n        }}\n"


@pytest.fixture
def roots(tmp_path: Path, test_pki: TestPKI) -> str:
    return str(test_pki.root_pem_file(tmp_path / "roots.pem"))


@pytest.fixture
def gateway_factory(tmp_path: Path, test_pki: TestPKI) -> Iterator[object]:
    started: list[NginxGateway] = []

    def start(locations: str, extra: str = "") -> NginxGateway:
        bundle = test_pki.bundle(*NAMES, common_name=NAMES[0])
        gateway = start_nginx(tmp_path / f"nginx{len(started)}", bundle, locations=locations, extra=extra)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        _stop(gateway.process)


def test_must_show_auth_ntlm_fails_with_basic_only_and_passes_with_ntlm(gateway_factory, roots: str) -> None:
    basic = gateway_factory(challenge("/rpc/rpcproxy.dll", 'Basic realm="mail.contoso.test"'))
    ntlm = gateway_factory(challenge("/rpc/rpcproxy.dll", "NTLM"))
    for gateway, code in ((basic, 1), (ntlm, 0)):
        result = run_cli("check", URL, "--connect", gateway.endpoint, "--auth", "ntlm", "--ca-file", roots, "--json")
        data = json.loads(result.stdout)
        rpc = next(item for item in data["items"] if item["id"] == "rpcproxy")
        if code == 1:
            assert rpc["status"] == "fail", rpc
            assert rpc["detail"].startswith("401 offers Basic but not NTLM")
            assert result.returncode == 1
        else:
            assert rpc == {**rpc, "status": "pass", "detail": "401 with NTLM"}
            # the only other failure allowed is none: mapi/autodiscover are not on this gateway
            failing = {item["id"] for item in data["items"] if item["status"] == "fail"}
            assert "rpcproxy" not in failing
    # without --auth, Basic alone is still a challenge
    assert check(URL, connect=basic.endpoint, ca_file=roots, timeout=5).item("rpcproxy").status is Status.PASS


def test_rpcproxy_404_says_outlook_anywhere_is_not_enabled(gateway_factory, roots: str) -> None:
    gateway = gateway_factory(challenge("/rpc/rpcproxy.dll", status=404) + challenge("/mapi/emsmdb", status=404))
    report = check(URL, connect=gateway.endpoint, ca_file=roots, timeout=5)
    assert report.item("rpcproxy").status is Status.FAIL
    assert (
        "Outlook Anywhere is not enabled or the RPC over HTTP proxy is not installed" in report.item("rpcproxy").detail
    )
    assert report.item("mapi").status is Status.WARN and "MAPI over HTTP is not enabled" in report.item("mapi").detail


ROOT_ONLY = """\
    server {
        listen 127.0.0.1:{port} ssl;
        server_name contoso.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location = /autodiscover/autodiscover.xml {
            add_header WWW-Authenticate NTLM always;
            return 401;
        }
        location / { return 404; }
    }
"""


def test_autodiscover_on_the_domain_root_only(gateway_factory, roots: str, dns_server: DnsServer) -> None:
    gateway = gateway_factory(
        challenge("/rpc/rpcproxy.dll", "NTLM") + challenge("/autodiscover/autodiscover.xml", status=404),
        ROOT_ONLY,
    )
    report = check(
        URL, connect=gateway.endpoint, ca_file=roots, timeout=5, domain="contoso.test", nameserver=dns_server.address
    )
    items = {item.id: item for item in report.items}
    assert (
        items["autodiscover-1"].status is Status.PASS and "contoso.test/autodiscover" in items["autodiscover-1"].title
    )
    assert all("not needed" in items[f"autodiscover-{n}"].detail for n in (2, 3, 4))
    assert "autodiscover" not in items  # found: no overall failure
    assert dns_server.queries == ["_autodiscover._tcp.contoso.test SRV"]


def test_autodiscover_found_through_the_srv_record(
    gateway_factory, roots: str, dns_server: DnsServer, tmp_path: Path
) -> None:
    # autodiscover only on mail.contoso.test: the domain root and autodiscover. answer 404, the
    # HTTP redirect is not there, the SRV record points at mail.contoso.test:443
    gateway = gateway_factory(
        challenge("/rpc/rpcproxy.dll", "NTLM")
        + """        location = /autodiscover/autodiscover.xml {
            if ($host != "mail.contoso.test") { return 404; }
            add_header WWW-Authenticate Negotiate always;
            return 401;
        }
"""
    )
    dns_server.records[("_autodiscover._tcp.contoso.test", "SRV")] = ["0 0 443 mail.contoso.test."]
    from tests.fixtures.core import free_port

    closed_http = f"127.0.0.1:{free_port()}"
    report = check(
        URL,
        connect=gateway.endpoint,
        ca_file=roots,
        timeout=5,
        domain="contoso.test",
        connect_http=closed_http,
        nameserver=dns_server.address,
    )
    items = {item.id: item for item in report.items}
    assert [items[f"autodiscover-{n}"].status for n in (1, 2, 3, 4)] == [
        Status.WARN,
        Status.WARN,
        Status.WARN,
        Status.PASS,
    ]
    assert "HTTP 404" in items["autodiscover-1"].detail and "no answer" in items["autodiscover-3"].detail
    assert (
        items["autodiscover-4"].title.endswith("-> mail.contoso.test:443")
        and "Negotiate" in items["autodiscover-4"].detail
    )
    # no SRV record and nothing else: Autodiscover fails as a whole
    dns_server.records.clear()
    report = check(
        URL,
        connect=gateway.endpoint,
        ca_file=roots,
        timeout=5,
        domain="contoso.test",
        connect_http=closed_http,
        nameserver=dns_server.address,
    )
    assert report.item("autodiscover").status is Status.FAIL and report.item("autodiscover-4").detail == "no SRV record"
