"""The files binder against a real nginx: swap, failed reload, reload that changes nothing."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.binders import probe
from certkeeper.binders.files import FilesBinder
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.gateways import NginxGateway, TestPKI

pytestmark = pytest.mark.e2e

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def served(gateway: NginxGateway, name: str = "mail.contoso.com") -> str:
    gateway.settle()  # no old worker left that could still answer with the old certificate
    return probe.fetch(probe.parse_endpoint(gateway.endpoint), name).fingerprint


def binder_for(gateway: NginxGateway, reload: list[str] | None, settle: float = 10) -> FilesBinder:
    return FilesBinder(
        "nginx",
        fullchain=gateway.fullchain,
        key=gateway.key,
        cert=gateway.cert_dir / "cert.pem",
        chain=gateway.cert_dir / "chain.pem",
        reload=reload,
        verify=[gateway.endpoint],
        settle_seconds=settle,
        probe_timeout=3,
    )


def test_deploy_and_reload_swaps_the_served_certificate(
    nginx_gateway: NginxGateway, test_pki: TestPKI
) -> None:
    old = nginx_gateway.initial
    assert old is not None and served(nginx_gateway) == old.fingerprint
    new = test_pki.bundle(*NAMES, common_name=NAMES[0])
    binder = binder_for(nginx_gateway, nginx_gateway.reload_argv)

    binder.deploy(new, old)

    assert served(nginx_gateway) == new.fingerprint
    assert served(nginx_gateway, "autodiscover.contoso.com") == new.fingerprint
    verification = binder.verify(new)
    assert verification.ok and verification.served_fingerprint == new.fingerprint
    assert len(verification.checks) == 2  # one per name as SNI
    # the other bundle is reported as NOT served, with what is served instead
    wrong = binder_for(nginx_gateway, None, settle=0).verify(old)
    assert not wrong.ok and wrong.checks[0].served_fingerprint == new.fingerprint
    # files: right contents, 0600, no temp files left behind
    assert nginx_gateway.fullchain.read_bytes() == new.fullchain_pem
    assert nginx_gateway.key.read_bytes() == new.key_pem
    assert (nginx_gateway.cert_dir / "chain.pem").read_bytes() == new.chain_pem
    for path in nginx_gateway.cert_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in nginx_gateway.cert_dir.iterdir()) == [
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "key.pem",
    ]


def test_failing_reload_restores_files_and_old_certificate_stays_served(
    nginx_gateway: NginxGateway, test_pki: TestPKI, tmp_path: Path
) -> None:
    old = nginx_gateway.initial
    assert old is not None
    new = test_pki.bundle(*NAMES)
    calls = tmp_path / "calls"
    # fails the first time (the reload after writing), succeeds the second (after rollback)
    script = (
        f"echo x >> {calls}; test $(wc -l < {calls}) -gt 1 || {{ echo 'config test failed' >&2; exit 3; }}"
    )
    binder = binder_for(nginx_gateway, ["/bin/sh", "-c", script])

    with pytest.raises(BindError) as caught:
        binder.deploy(new, old)

    assert not isinstance(caught.value, VerifyError)
    message = str(caught.value)
    assert "nginx: reload" in message and "exited with 3" in message and "previous files restored" in message
    assert calls.read_text().count("x") == 2  # reloaded again after the rollback
    assert nginx_gateway.fullchain.read_bytes() == old.fullchain_pem
    assert nginx_gateway.key.read_bytes() == old.key_pem
    assert not (nginx_gateway.cert_dir / "cert.pem").exists()  # did not exist before: removed again
    assert served(nginx_gateway) == old.fingerprint


def test_reload_that_changes_nothing_is_caught_and_rolled_back(
    nginx_gateway: NginxGateway, test_pki: TestPKI
) -> None:
    old = nginx_gateway.initial
    assert old is not None
    new = test_pki.bundle(*NAMES)
    binder = binder_for(nginx_gateway, ["true"], settle=1.5)  # "succeeds" without reloading nginx

    with pytest.raises(VerifyError) as caught:
        binder.deploy(new, old)

    message = str(caught.value)
    assert "nginx: verify" in message and "serves another certificate" in message
    assert nginx_gateway.fullchain.read_bytes() == old.fullchain_pem
    assert served(nginx_gateway) == old.fingerprint
    # a real reload now proves the restored files are the old certificate, not the new one
    nginx_gateway.reload()
    assert binder_for(nginx_gateway, None, settle=5).verify(old).ok


def test_reload_timeout_is_a_bind_error(nginx_gateway: NginxGateway, test_pki: TestPKI) -> None:
    binder = FilesBinder(
        "slow",
        fullchain=nginx_gateway.fullchain,
        key=nginx_gateway.key,
        reload=["sleep", "5"],
        reload_timeout=0.3,
    )
    with pytest.raises(BindError, match=r"slow: reload: sleep did not finish within 0.3s"):
        binder.deploy(test_pki.bundle(*NAMES), nginx_gateway.initial)
    assert nginx_gateway.initial is not None
    assert nginx_gateway.fullchain.read_bytes() == nginx_gateway.initial.fullchain_pem


@pytest.mark.parametrize("encryption", ["aes256", "legacy"])
def test_pfx_written_with_password_from_secret_ref(
    tmp_path: Path, test_pki: TestPKI, encryption: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PFX_PASSWORD", "s3cret-pfx")
    secrets = {"env:PFX_PASSWORD": "s3cret-pfx"}
    context = PluginContext(
        clock=None,
        state=MemoryState(),
        data_dir=tmp_path,  # type: ignore[arg-type]
        resolve_secret=lambda ref: secrets[ref],
    )
    binder = FilesBinder.from_options(
        "iis-share",
        {
            "pfx": str(tmp_path / "out" / "mail.pfx"),
            "pfx_password": "env:PFX_PASSWORD",
            "pfx_encryption": encryption,
        },
        context,
    )
    bundle = test_pki.bundle(*NAMES)
    binder.deploy(bundle, None)

    pfx = tmp_path / "out" / "mail.pfx"
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    loaded = pkcs12.load_pkcs12(pfx.read_bytes(), b"s3cret-pfx")
    assert loaded.cert is not None and loaded.cert.certificate.serial_number == int(bundle.serial, 16)
    assert len(loaded.additional_certs) == 1
    # openssl agrees on the algorithm (3DES/SHA-1 for Windows Server 2016, AES-256 otherwise)
    info = subprocess.run(
        ["openssl", "pkcs12", "-info", "-noout", "-legacy", "-in", str(pfx), "-passin", "pass:s3cret-pfx"],
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stderr
    expected = "AES-256-CBC" if encryption == "aes256" else "pbeWithSHA1And3-KeyTripleDES-CBC"
    assert expected in info.stderr + info.stdout


def test_options_errors_name_the_key_path(tmp_path: Path) -> None:
    context = PluginContext(clock=None, state=MemoryState(), data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"bindings\.web\.reload_timeout"):
        FilesBinder.from_options("web", {"key": "/tmp/k", "reload_timeout": -1}, context)
    with pytest.raises(ConfigError, match=r"bindings\.web\.pfx_password: required"):
        FilesBinder.from_options("web", {"pfx": "/tmp/x.pfx"}, context)
    with pytest.raises(ConfigError, match="name at least one"):
        FilesBinder.from_options("web", {}, context)
    with pytest.raises(ConfigError, match="expected host:port"):
        FilesBinder.from_options("web", {"key": "/tmp/k", "verify": ["nohost"]}, context)
    # a reload string is split without a shell; shell only on request
    binder = FilesBinder.from_options("web", {"key": "/tmp/k", "reload": "nginx -s reload"}, context)
    assert binder.reload == ["nginx", "-s", "reload"]
    binder = FilesBinder.from_options(
        "web", {"key": "/tmp/k", "reload": "a && b", "reload_shell": True}, context
    )
    assert binder.reload == ["/bin/sh", "-c", "a && b"]
