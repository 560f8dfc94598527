"""The ChallengeSolver contract, run against every built-in solver mode, built the way the ACME
issuer builds them (``build_solvers`` from the issuer's options) and checked against real servers:
http-01 standalone and webroot (fetched over HTTP, the webroot through a static file server),
dns-01 by RFC 2136 to BIND 9, dns-01 exec through pebble-challtestsrv, dns-lexicon's powerdns
provider to PowerDNS Authoritative and acme-dns to its double (all queried over DNS), and the
Windows DNS solver at the PowerShell boundary (a recording runner keeping the zone's records).

- ``present`` makes the key authorization visible where the CA looks (RFC 8555 §8.3, §8.4);
  ``cleanup`` removes it, and only it: another challenge presented meanwhile stays visible
  (acme-dns cannot delete: its API keeps each name's two latest values);
- a ``present`` that fails raises IssuanceError, and a ``cleanup`` after it raises nothing else
  (the issuer calls it in ``finally`` and logs its IssuanceError) and leaves nothing behind.
"""

from __future__ import annotations

import base64
import functools
import http.server
import socket
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from certkeeper.binders.powershell import Command, RecordingRunner
from certkeeper.clock import FrozenClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.options import AcmeOptions, Dns01Options, Http01Options
from certkeeper.issuers.acme.solvers import ChallengeSolver
from certkeeper.issuers.acme.solvers.acme_dns import AcmeDnsDns01
from certkeeper.issuers.acme.solvers.build import build_solvers
from certkeeper.issuers.acme.solvers.dns01 import challenge_fqdn, txt_value
from certkeeper.issuers.acme.solvers.windows_dns import WindowsDns01
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.acmedns import AcmeDnsDouble
from tests.fixtures.core import free_port
from tests.fixtures.pebble import Bind, ChallTestSrv
from tests.fixtures.powerdns import PowerDns
from tests.support import write_dns_hook


@dataclass
class Case:
    """A solver mode: the issuer options that select it, whether a key authorization is visible
    where the CA looks, and options under which ``present`` fails."""

    challenge: str
    options: dict[str, Any]
    visible: Callable[[str, str, str], bool]  # (domain, token, key authorization)
    broken: dict[str, Any]
    secrets: dict[str, str]
    #: False where the provider cannot delete (acme-dns keeps each name's two latest values)
    cleanup_removes: bool = True
    #: what an operator does once per name before the first issuance (acme-dns: the CNAME)
    prepare: Callable[[ChallengeSolver, str], None] = lambda _solver, _domain: None
    #: the Windows DNS solver reaches PowerShell through this seam (a recording runner here)
    adapt: Callable[[ChallengeSolver], None] = lambda _solver: None
    #: the zone the challenges are in
    domain_suffix: str = "contoso.test"


def _http_visible(port: int) -> Callable[[str, str, str], bool]:
    def visible(_domain: str, token: str, key_authorization: str) -> bool:
        url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.read() == key_authorization.encode())
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except OSError:  # nobody listening
            return False
    return visible


def _txt_visible(address: str, port: int) -> Callable[[str, str, str], bool]:
    def visible(domain: str, _token: str, key_authorization: str) -> bool:
        query = dns.message.make_query(challenge_fqdn(domain), "TXT")
        response = dns.query.udp(query, address, port=port, timeout=3)
        values = [b"".join(record.strings).decode() for rrset in response.answer
                  if rrset.rdtype == dns.rdatatype.TXT for record in rrset]
        return txt_value(key_authorization) in values
    return visible


def _standalone(request: pytest.FixtureRequest) -> Iterator[Case]:
    port = free_port()
    taken = socket.socket()  # someone else listens on the port of the broken solver
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        yield Case("http-01", {"http01": {"mode": "standalone", "address": "127.0.0.1", "port": port}},
                   _http_visible(port),
                   {"http01": {"mode": "standalone", "address": "127.0.0.1", "port": taken.getsockname()[1]}}, {})
    finally:
        taken.close()


def _webroot(request: pytest.FixtureRequest) -> Iterator[Case]:
    webroot: Path = request.getfixturevalue("tmp_path") / "wwwroot"
    webroot.mkdir()
    handler = functools.partial(_Quiet, directory=str(webroot))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Case("http-01", {"http01": {"mode": "webroot", "webroot": str(webroot)}},
                   _http_visible(int(server.server_address[1])),
                   {"http01": {"mode": "webroot", "webroot": str(webroot / "missing")}}, {})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """A static file server over the webroot, as IIS or nginx would serve it."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _rfc2136(request: pytest.FixtureRequest) -> Iterator[Case]:
    bind: Bind = request.getfixturevalue("bind")
    table = {"mode": "rfc2136", "server": "127.0.0.1", "port": bind.port, "tsig_key_name": bind.key_name,
             "tsig_secret": "secret:tsig", "resolver": bind.address, "propagation_timeout": 10}
    yield Case("dns-01", {"challenge": "dns-01", "dns01": table}, _txt_visible("127.0.0.1", bind.port),
               {"challenge": "dns-01", "dns01": {**table, "tsig_secret": "secret:wrong"}},
               {"secret:tsig": bind.key_secret, "secret:wrong": base64.b64encode(b"x" * 32).decode()})


def _exec(request: pytest.FixtureRequest) -> Iterator[Case]:
    challtestsrv: ChallTestSrv = request.getfixturevalue("challtestsrv")
    folder: Path = request.getfixturevalue("tmp_path")
    hook = write_dns_hook(folder / "dns-hook.py", challtestsrv.management_port)
    failing = folder / "failing-hook.sh"
    failing.write_text('#!/bin/sh\nif [ "$1" = present ]; then echo "provider said no" >&2; exit 3; fi\n')
    failing.chmod(0o755)
    table = {"mode": "exec", "script": str(hook), "cname_delegation": False,
             "nameservers": [challtestsrv.dns_address], "propagation_timeout": 10}
    yield Case("dns-01", {"challenge": "dns-01", "dns01": table}, _txt_visible("127.0.0.1", challtestsrv.dns_port),
               {"challenge": "dns-01", "dns01": {**table, "script": str(failing)}}, {})


def _lexicon(request: pytest.FixtureRequest) -> Iterator[Case]:
    """dns-lexicon's powerdns provider against a real PowerDNS Authoritative (its HTTP API)."""
    powerdns: PowerDns = request.getfixturevalue("powerdns")
    zone = f"z{free_port()}.contoso.test"  # a zone of this test's own in the session's server
    powerdns.add_zone(zone)
    table = {"mode": "lexicon", "provider": "powerdns", "provider_options": {"pdns_server": powerdns.api_url},
             "credentials": {"auth_token": "secret:pdns"}, "zone": zone, "resolver": powerdns.address,
             "nameservers": [powerdns.address], "propagation_timeout": 10, "cname_delegation": False}
    yield Case("dns-01", {"challenge": "dns-01", "dns01": table},
               _txt_visible("127.0.0.1", powerdns.port),
               {"challenge": "dns-01", "dns01": {**table, "credentials": {"auth_token": "secret:wrong"}}},
               {"secret:pdns": powerdns.api_key, "secret:wrong": "not-the-key"}, domain_suffix=zone)


def _acme_dns(request: pytest.FixtureRequest) -> Iterator[Case]:
    """acme-dns against its double (its documented HTTP API, and the TXT records over DNS)."""
    double: AcmeDnsDouble = request.getfixturevalue("acme_dns")
    table = {"mode": "acme-dns", "acme_dns_url": double.url, "resolver": double.dns_address,
             "nameservers": [double.dns_address], "propagation_timeout": 10}

    def prepare(solver: ChallengeSolver, domain: str) -> None:
        # registered once per name (`certkeeper dns register`), then the zone owner adds the CNAME
        assert isinstance(solver, AcmeDnsDns01)
        registration, _new = solver.register(domain)
        double.cnames[challenge_fqdn(domain)] = registration.fulldomain.rstrip(".") + "."

    address, port = double.dns_address.split(":")
    yield Case("dns-01", {"challenge": "dns-01", "dns01": table}, _txt_visible(address, int(port)),
               {"challenge": "dns-01", "dns01": {**table, "acme_dns_url": f"http://127.0.0.1:{free_port()}"}},
               {}, cleanup_removes=False, prepare=prepare)


class _WindowsDnsServer:
    """The DnsServer module's records, kept by a recording runner (Windows cannot run here)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], set[str]] = {}  # (zone, relative name) -> TXT values
        self.refuse = False
        self.runner = RecordingRunner(
            outputs={"Add-DnsServerResourceRecord": self.add, "Remove-DnsServerResourceRecord": self.remove},
            fail={"Add-DnsServerResourceRecord": lambda _c: "Access denied." if self.refuse else None},
        )

    def add(self, command: Command) -> list[Any]:
        params = command.params
        self.records.setdefault((params["ZoneName"], params["Name"]), set()).add(params["DescriptiveText"])
        return [0]

    def remove(self, command: Command) -> list[Any]:
        params = command.params
        self.records.get((params["ZoneName"], params["Name"]), set()).discard(params["RecordData"])
        return [1]

    def visible(self, domain: str, _token: str, key_authorization: str) -> bool:
        name = challenge_fqdn(domain).removesuffix(".contoso.test.")
        return txt_value(key_authorization) in self.records.get(("contoso.test", name), set())


def _windows(request: pytest.FixtureRequest) -> Iterator[Case]:
    server = _WindowsDnsServer()
    # a resolver nobody answers on loopback: no CNAME or NS lookups reach anything
    table = {"mode": "windows", "zone": "contoso.test", "dns_server": "dc01.contoso.test",
             "resolver": f"127.0.0.1:{free_port()}", "cname_delegation": False, "propagation_timeout": 1}

    def adapt(solver: ChallengeSolver) -> None:
        assert isinstance(solver, WindowsDns01)
        solver.runner = lambda: server.runner
        server.refuse = solver.dns_server == "refusing.contoso.test"

    yield Case("dns-01", {"challenge": "dns-01", "dns01": table}, server.visible,
               {"challenge": "dns-01", "dns01": {**table, "dns_server": "refusing.contoso.test"}}, {},
               adapt=adapt)


CASES: dict[tuple[str, str], Callable[[pytest.FixtureRequest], Iterator[Case]]] = {
    ("http-01", "standalone"): _standalone,
    ("http-01", "webroot"): _webroot,
    ("dns-01", "rfc2136"): _rfc2136,
    ("dns-01", "exec"): _exec,
    ("dns-01", "lexicon"): _lexicon,
    ("dns-01", "acme-dns"): _acme_dns,
    ("dns-01", "windows"): _windows,
}


def _modes(options: type[Http01Options] | type[Dns01Options]) -> tuple[str, ...]:
    return typing.get_args(options.model_fields["mode"].annotation)


def test_every_solver_mode_is_covered() -> None:
    modes = {("http-01", mode) for mode in _modes(Http01Options)} | {("dns-01", mode) for mode in _modes(Dns01Options)}
    assert set(CASES) == modes


@pytest.fixture(params=sorted(CASES), ids=lambda key: "-".join(key))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    yield from CASES[request.param](request)


def build(case: Case, options: dict[str, Any], tmp_path: Path, clock: FrozenClock) -> ChallengeSolver:
    context = PluginContext(clock=clock, state=MemoryState(), data_dir=tmp_path,
                            resolve_secret=case.secrets.__getitem__)
    solver = build_solvers(AcmeOptions.model_validate(options), context)[case.challenge]
    assert isinstance(solver, ChallengeSolver) and solver.challenge_type == case.challenge
    case.adapt(solver)
    return solver


def test_present_makes_the_key_authorization_visible_and_cleanup_removes_only_it(
    case: Case, tmp_path: Path, clock: FrozenClock
) -> None:
    solver = build(case, case.options, tmp_path, clock)
    first = (f"one.{case.domain_suffix}", "tokenOne-abc", "tokenOne-abc.thumbprint")
    second = (f"two.{case.domain_suffix}", "tokenTwo-def", "tokenTwo-def.thumbprint")
    for domain, _token, _key_authorization in (first, second):
        case.prepare(solver, domain)
    assert not case.visible(*first)
    solver.present(*first)
    try:
        assert case.visible(*first)
        solver.present(*second)  # another authorization of the same order, or another order
        try:
            assert case.visible(*second)
        finally:
            solver.cleanup(*first)
        assert case.visible(*first) is not case.cleanup_removes
        assert case.visible(*second)
    finally:
        solver.cleanup(*second)
    assert case.visible(*second) is not case.cleanup_removes


def test_cleanup_after_a_failed_present_is_safe(case: Case, tmp_path: Path, clock: FrozenClock) -> None:
    solver = build(case, case.broken, tmp_path, clock)
    challenge = (f"broken.{case.domain_suffix}", "tokenBroken-ghi", "tokenBroken-ghi.thumbprint")
    with pytest.raises(IssuanceError):
        solver.present(*challenge)
    try:
        solver.cleanup(*challenge)
    except IssuanceError:
        pass  # allowed: the issuer logs it; anything else would escape its finally
    assert not case.visible(*challenge)
