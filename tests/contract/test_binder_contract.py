"""Every built-in binder, built the way the service builds it (registry + from_options), keeps the
Binder contract: deploy is idempotent, rollback is deploy(previous, bundle), verify reports the
served fingerprint. files and haproxy against real servers; exchange and iis only constructed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certkeeper.binders import Binder, load_binder
from certkeeper.clock import FrozenClock
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.gateways import HaproxyGateway, NginxGateway, TestPKI


@pytest.fixture
def context(tmp_path: Path, clock: FrozenClock) -> PluginContext:
    return PluginContext(clock=clock, state=MemoryState(), data_dir=tmp_path, resolve_secret=lambda ref: "pw")


def build(kind: str, options: dict[str, Any], context: PluginContext) -> Any:
    binder = load_binder(kind).from_options(f"{kind}-1", options, context)
    assert isinstance(binder, Binder) and binder.name == f"{kind}-1"
    return binder


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["files", "haproxy"])
def test_real_gateways_keep_the_contract(
    kind: str, request: pytest.FixtureRequest, context: PluginContext, test_pki: TestPKI
) -> None:
    if kind == "files":
        nginx: NginxGateway = request.getfixturevalue("nginx_gateway")
        gateway: NginxGateway | HaproxyGateway = nginx
        options: dict[str, Any] = {
            "fullchain": str(nginx.fullchain),
            "key": str(nginx.key),
            "reload": nginx.reload_argv,
            "verify": [nginx.endpoint],
            "settle_seconds": 10,
        }
    else:
        haproxy: HaproxyGateway = request.getfixturevalue("haproxy_gateway")
        gateway = haproxy
        options = {"socket": str(haproxy.socket_path), "crt": str(haproxy.crt), "verify": [haproxy.endpoint]}
    binder = build(kind, options, context)
    old = gateway.initial
    assert old is not None
    new = test_pki.bundle(*old.names)

    binder.deploy(new, old)
    binder.deploy(new, old)  # idempotent
    verification = binder.verify(new)
    assert verification.ok and verification.served_fingerprint == new.fingerprint  # what status records

    binder.deploy(old, new)  # rollback
    assert binder.verify(old).served_fingerprint == old.fingerprint
    binder.retire(new, old)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("exchange", {"version": "2016", "servers": ["ex01.contoso.com"], "verify": ["10.0.0.11:443"]}),
        ("iis", {"server": "web01", "site": "Default Web Site", "verify": ["web01:443"]}),
    ],
)
def test_windows_binders_build_from_options(
    kind: str, options: dict[str, Any], context: PluginContext
) -> None:
    build(kind, options, context)
