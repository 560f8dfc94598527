"""The ChallengeSolver contract, run against every built-in solver mode, built the way the ACME
issuer builds them (``build_solvers`` from the issuer's options) and checked against real servers:
http-01 standalone and webroot (fetched over HTTP, the webroot through a static file server),
dns-01 by RFC 2136 to BIND 9, and dns-01 exec through pebble-challtestsrv (queried over DNS).

- ``present`` makes the key authorization visible where the CA looks (RFC 8555 §8.3, §8.4);
  ``cleanup`` removes it, and only it: another challenge presented meanwhile stays visible;
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

from certkeeper.clock import FrozenClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.issuer import build_solvers
from certkeeper.issuers.acme.options import AcmeOptions, Dns01Options, Http01Options
from certkeeper.issuers.acme.solvers import ChallengeSolver
from certkeeper.issuers.acme.solvers.dns01 import challenge_fqdn, txt_value
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.core import free_port
from tests.fixtures.pebble import Bind, ChallTestSrv
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


CASES: dict[tuple[str, str], Callable[[pytest.FixtureRequest], Iterator[Case]]] = {
    ("http-01", "standalone"): _standalone,
    ("http-01", "webroot"): _webroot,
    ("dns-01", "rfc2136"): _rfc2136,
    ("dns-01", "exec"): _exec,
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
    return solver


def test_present_makes_the_key_authorization_visible_and_cleanup_removes_only_it(
    case: Case, tmp_path: Path, clock: FrozenClock
) -> None:
    solver = build(case, case.options, tmp_path, clock)
    first = ("one.contoso.test", "tokenOne-abc", "tokenOne-abc.thumbprint")
    second = ("two.contoso.test", "tokenTwo-def", "tokenTwo-def.thumbprint")
    assert not case.visible(*first)
    solver.present(*first)
    try:
        assert case.visible(*first)
        solver.present(*second)  # another authorization of the same order, or another order
        try:
            assert case.visible(*second)
        finally:
            solver.cleanup(*first)
        assert not case.visible(*first)
        assert case.visible(*second)
    finally:
        solver.cleanup(*second)
    assert not case.visible(*second)


def test_cleanup_after_a_failed_present_is_safe(case: Case, tmp_path: Path, clock: FrozenClock) -> None:
    solver = build(case, case.broken, tmp_path, clock)
    challenge = ("broken.contoso.test", "tokenBroken-ghi", "tokenBroken-ghi.thumbprint")
    with pytest.raises(IssuanceError):
        solver.present(*challenge)
    try:
        solver.cleanup(*challenge)
    except IssuanceError:
        pass  # allowed: the issuer logs it; anything else would escape its finally
    assert not case.visible(*challenge)
