"""The HAProxy binder against a real HAProxy: runtime API swap without restart."""

from __future__ import annotations

import stat

import pytest

from certkeeper.atomicfile import TEMP_SUFFIX
from certkeeper.binders import probe
from certkeeper.binders.haproxy import HaproxyBinder
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Verification
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.gateways import HaproxyGateway, TestPKI

pytestmark = pytest.mark.e2e


def served(gateway: HaproxyGateway) -> str:
    return probe.fetch(probe.parse_endpoint(gateway.endpoint), "mail.contoso.com").fingerprint


@pytest.mark.parametrize("via", ["unix", "tcp"])
def test_runtime_api_swaps_without_restart(
    haproxy_gateway: HaproxyGateway, test_pki: TestPKI, via: str
) -> None:
    old = haproxy_gateway.initial
    assert old is not None and served(haproxy_gateway) == old.fingerprint
    pid_before = haproxy_gateway.pid
    assert f"Pid: {pid_before}" in HaproxyBinder(
        "x", socket=str(haproxy_gateway.socket_path), crt=haproxy_gateway.crt
    ).api.command("show info")
    address = (
        str(haproxy_gateway.socket_path) if via == "unix" else f"tcp:127.0.0.1:{haproxy_gateway.admin_port}"
    )
    binder = HaproxyBinder(
        "lb",
        socket=address,
        crt=haproxy_gateway.crt,
        verify=[haproxy_gateway.endpoint],
        settle_seconds=5,
        probe_timeout=3,
    )
    new = test_pki.bundle("mail.contoso.com")
    # what a run killed while writing the crt file leaves beside it: a temp file holding a key
    stale = haproxy_gateway.crt.parent / f".{haproxy_gateway.crt.name}.k1ll3d{TEMP_SUFFIX}"
    stale.write_bytes(old.fullchain_pem + old.key_pem)

    binder.deploy(new, old)

    assert not stale.exists()
    assert served(haproxy_gateway) == new.fingerprint
    assert haproxy_gateway.process.poll() is None and haproxy_gateway.pid == pid_before  # no restart
    info = binder.api.command("show info")
    assert f"Pid: {pid_before}" in info  # the same HAProxy process answers the runtime API
    assert haproxy_gateway.crt.read_bytes() == new.fullchain_pem + new.key_pem  # a restart keeps it
    assert stat.S_IMODE(haproxy_gateway.crt.stat().st_mode) == 0o600
    assert [p.name for p in haproxy_gateway.crt.parent.iterdir() if "certkeeper-tmp" in p.name] == []
    assert binder.verify(new).ok

    # rolling back is deploying the previous bundle
    binder.deploy(old, new)
    assert served(haproxy_gateway) == old.fingerprint and haproxy_gateway.pid == pid_before


def test_failed_verification_puts_the_previous_certificate_back(
    haproxy_gateway: HaproxyGateway, test_pki: TestPKI
) -> None:
    old = haproxy_gateway.initial
    assert old is not None
    new = test_pki.bundle("mail.contoso.com")

    def never(bundle: object) -> Verification:  # stands in for a load balancer still serving the old one
        return probe.verify_endpoints(
            old.fingerprint[::-1], [haproxy_gateway.endpoint], ["mail.contoso.com"], settle_seconds=0
        )

    binder = HaproxyBinder(
        "lb",
        socket=str(haproxy_gateway.socket_path),
        crt=haproxy_gateway.crt,
        verify=[haproxy_gateway.endpoint],
        prober=never,
    )
    with pytest.raises(VerifyError, match="lb: verify"):
        binder.deploy(new, old)
    assert served(haproxy_gateway) == old.fingerprint
    assert haproxy_gateway.crt.read_bytes() == old.fullchain_pem + old.key_pem


def test_unknown_crt_path_is_refused_and_nothing_changes(
    haproxy_gateway: HaproxyGateway, test_pki: TestPKI
) -> None:
    old = haproxy_gateway.initial
    assert old is not None
    other = haproxy_gateway.root / "not-loaded.pem"
    binder = HaproxyBinder("lb", socket=str(haproxy_gateway.socket_path), crt=other)
    with pytest.raises(BindError, match=r"lb: set ssl cert .*not-loaded\.pem"):
        binder.deploy(test_pki.bundle("mail.contoso.com"), old)
    assert not other.exists()
    assert served(haproxy_gateway) == old.fingerprint


def test_a_key_that_does_not_match_is_refused_at_commit(
    haproxy_gateway: HaproxyGateway, test_pki: TestPKI
) -> None:
    old = haproxy_gateway.initial
    assert old is not None
    a, b = test_pki.bundle("mail.contoso.com"), test_pki.bundle("mail.contoso.com")
    binder = HaproxyBinder("lb", socket=str(haproxy_gateway.socket_path), crt=haproxy_gateway.crt)
    with pytest.raises(BindError, match=r"lb: (set|commit) ssl cert"):
        binder.set_certificate(a.fullchain_pem + b.key_pem)
    assert served(haproxy_gateway) == old.fingerprint
    # the transaction was aborted: a good update still goes through
    binder.deploy(a, old)
    assert served(haproxy_gateway) == a.fingerprint


def test_options(tmp_path: object) -> None:
    context = PluginContext(clock=None, state=MemoryState(), data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"bindings\.lb\.socket"):
        HaproxyBinder.from_options("lb", {"crt": "/etc/haproxy/x.pem"}, context)
    with pytest.raises(ConfigError, match="absolute path"):
        HaproxyBinder.from_options("lb", {"socket": "/run/admin.sock", "crt": "x.pem"}, context)
