"""AcmeIssuer against a real Pebble 2.6: http-01 standalone and webroot, dns-01 via an exec
script talking to challtestsrv, progress steps, failures, preferred options."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certkeeper.clock import SystemClock
from certkeeper.errors import ConfigError, IssuanceError, IssuanceRejected
from certkeeper.issuers import Issuer, SupportsRenewalInfo, SupportsRevoke
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.pebble import ChallTestSrv, Pebble, make_csr, verify_chain
from tests.support import write_dns_hook

pytestmark = pytest.mark.e2e


def context(tmp_path: Path, state: MemoryState | None = None) -> PluginContext:
    return PluginContext(clock=SystemClock(), state=state or MemoryState(), data_dir=tmp_path)


def options(pebble: Pebble, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "directory": pebble.directory, "contact": ["mailto:admin@contoso.test"], "agree_tos": True,
        "ca_bundle": str(pebble.ca_bundle), "public_names_only": False,  # Pebble: a test CA, .test names
        "http01": {"mode": "standalone", "address": "127.0.0.1", "port": pebble.http_port},
    }
    base.update(extra)
    return base


def request(names: tuple[str, ...], steps: list[str] | None = None, **extra: Any) -> IssueRequest:
    _key, csr = make_csr(names)
    return IssueRequest(certificate_id="test", names=names, csr_pem=csr,
                        progress=(steps.append if steps is not None else (lambda _s: None)), **extra)


def test_http01_standalone_issues_a_chain_that_verifies(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    assert isinstance(issuer, Issuer) and isinstance(issuer, SupportsRenewalInfo)
    assert isinstance(issuer, SupportsRevoke)
    steps: list[str] = []
    names = ("mail.contoso.test", "autodiscover.contoso.test")
    result = issuer.issue(request(names, steps))
    leaf = x509.load_pem_x509_certificate(result.cert_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(), "mail.contoso.test")
    assert steps[:2] == ["account", "order"]
    assert "authorization mail.contoso.test (http-01)" in steps
    assert "authorization autodiscover.contoso.test (http-01)" in steps
    assert steps[-3:] == ["validation", "finalize", "download"]
    assert result.details["order_url"].startswith(f"https://127.0.0.1:{pebble.port}/")
    # the listener is down once issuance is over
    import socket

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", pebble.http_port), timeout=1):
        pass


def test_account_is_registered_once_and_reused(pebble: Pebble, tmp_path: Path) -> None:
    state = MemoryState()
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path, state))
    first = issuer.register()
    assert first["status"] == "valid" and first["url"] and first["contact"] == ["mailto:admin@contoso.test"]
    assert "key" not in str(first).lower().replace("key_algorithm", "")
    (stored_key,) = state.keys("acme-account/")
    # a second issuer over the same state uses the same account for an order
    again = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path, state))
    result = again.issue(request(("reuse.contoso.test",)))
    assert result.details["account_url"] == first["url"]
    assert state.keys("acme-account/") == [stored_key]
    # another contact is another account
    other = AcmeIssuer.from_options("pebble", options(pebble, contact=["mailto:other@contoso.test"]),
                                    context(tmp_path, state))
    assert other.register()["url"] != first["url"]
    assert len(state.keys("acme-account/")) == 2


def test_deactivate_then_show(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    url = issuer.register()["url"]
    gone = issuer.deactivate()
    assert gone["url"] == url and gone["status"] == "deactivated"
    assert issuer.show()["status"] == "unregistered"


def test_agree_tos_is_required_to_register(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble, agree_tos=False), context(tmp_path))
    with pytest.raises(ConfigError, match=r"issuers\.pebble\.agree_tos must be true"):
        issuer.issue(request(("tos.contoso.test",)))


def test_options_errors_name_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"issuers\.le\.contact"):
        AcmeIssuer.from_options("le", {"contact": ["admin@contoso.com"]}, context(tmp_path))
    with pytest.raises(ConfigError, match=r"issuers\.le\.http01\.port"):
        AcmeIssuer.from_options("le", {"http01": {"port": 0}}, context(tmp_path))
    with pytest.raises(ConfigError, match=r"issuers\.le: dns01"):
        AcmeIssuer.from_options("le", {"challenge": "dns-01"}, context(tmp_path))
    with pytest.raises(ConfigError, match=r"issuers\.le\.directory"):
        AcmeIssuer.from_options("le", {"directory": "lets-encrypt"}, context(tmp_path))
    issuer = AcmeIssuer.from_options("le", {"directory": "letsencrypt-staging"}, context(tmp_path))
    assert issuer.options.directory == "https://acme-staging-v02.api.letsencrypt.org/directory"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webroot_server(pebble: Pebble, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A plain web server for ``tmp_path/www`` on Pebble's http-01 port; records served paths."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(_Quiet):
        def do_GET(self) -> None:
            seen.append(self.path)
            super().do_GET()

    handler = partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, seen
    finally:
        server.shutdown()
        server.server_close()


def test_http01_webroot_writes_then_removes_tokens(pebble: Pebble, tmp_path: Path,
                                                   webroot_server: tuple[Path, list[str]]) -> None:
    root, seen = webroot_server
    (root / "index.html").write_text("site")
    issuer = AcmeIssuer.from_options(
        "pebble", options(pebble, http01={"mode": "webroot", "webroot": str(root)}), context(tmp_path))
    result = issuer.issue(request(("owa.contoso.test",)))
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(), "owa.contoso.test")
    assert any(path.startswith("/.well-known/acme-challenge/") for path in seen)
    assert sorted(p.name for p in root.iterdir()) == ["index.html"]  # tokens, web.config, folders gone


def test_http01_webroot_keeps_an_existing_web_config(pebble: Pebble, tmp_path: Path,
                                                     webroot_server: tuple[Path, list[str]]) -> None:
    root, _seen = webroot_server
    folder = root / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True)
    (folder / "web.config").write_text("<configuration>mine</configuration>")
    issuer = AcmeIssuer.from_options(
        "pebble", options(pebble, http01={"mode": "webroot", "webroot": str(root)}), context(tmp_path))
    issuer.issue(request(("owa2.contoso.test",)))
    assert [p.name for p in folder.iterdir()] == ["web.config"]
    assert (folder / "web.config").read_text() == "<configuration>mine</configuration>"


def exec_script(tmp_path: Path, challtestsrv: ChallTestSrv) -> tuple[Path, Path]:
    log = tmp_path / "exec.log"
    return write_dns_hook(tmp_path / "dns-hook.py", challtestsrv.management_port, log=log), log


def test_dns01_exec_script_with_challtestsrv(pebble: Pebble, challtestsrv: ChallTestSrv,
                                             tmp_path: Path) -> None:
    script, log = exec_script(tmp_path, challtestsrv)
    issuer = AcmeIssuer.from_options("pebble", options(
        pebble, http01=None, dns01={"mode": "exec", "script": str(script), "cname_delegation": False,
                                    "nameservers": [challtestsrv.dns_address]}), context(tmp_path))
    names = ("*.contoso.test", "contoso.test")
    result = issuer.issue(request(names))
    verify_chain(result.cert_pem, result.chain_pem, pebble.root_pem(), "anything.contoso.test")
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(f"{action} _acme-challenge.contoso.test. {name}"
                                   for action in ("present", "cleanup") for name in names)


def test_solver_per_name(pebble: Pebble, challtestsrv: ChallTestSrv, tmp_path: Path) -> None:
    script, log = exec_script(tmp_path, challtestsrv)
    steps: list[str] = []
    issuer = AcmeIssuer.from_options("pebble", options(
        pebble, dns01={"mode": "exec", "script": str(script), "cname_delegation": False},
        solvers=[{"names": ["*.dns.contoso.test"], "type": "dns-01"}]), context(tmp_path))
    issuer.issue(request(("web.contoso.test", "a.dns.contoso.test"), steps))
    assert "authorization web.contoso.test (http-01)" in steps
    assert "authorization a.dns.contoso.test (dns-01)" in steps
    assert "present _acme-challenge.a.dns.contoso.test. a.dns.contoso.test" in log.read_text()


def test_validation_failure_names_the_name(pebble: Pebble, tmp_path: Path) -> None:
    """A dns-01 hook that publishes nothing: the CA cannot validate, and says so for that name.
    Retryable: a record that was not visible yet may be next time."""
    script = tmp_path / "noop.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    issuer = AcmeIssuer.from_options("pebble", options(
        pebble, http01=None, dns01={"mode": "exec", "script": str(script), "cname_delegation": False}),
        context(tmp_path))
    with pytest.raises(IssuanceError) as caught:
        issuer.issue(request(("nothing.contoso.test",)))
    assert caught.value.retryable and not isinstance(caught.value, IssuanceRejected)
    assert caught.value.name == "nothing.contoso.test"
    assert caught.value.problem and "unauthorized" in caught.value.problem
    assert "nothing.contoso.test" in str(caught.value)


def test_blocklisted_name_is_rejected(pebble: Pebble, tmp_path: Path) -> None:
    issuer = AcmeIssuer.from_options("pebble", options(pebble), context(tmp_path))
    with pytest.raises(IssuanceRejected) as caught:
        issuer.issue(request(("www.blocked.test", "fine.contoso.test")))
    assert caught.value.problem and "rejectedIdentifier" in caught.value.problem
    assert "www.blocked.test" in str(caught.value)


def test_exec_script_failure_is_reported(pebble: Pebble, tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho 'provider said no' >&2\nexit 3\n")
    script.chmod(0o755)
    issuer = AcmeIssuer.from_options("pebble", options(
        pebble, http01=None, dns01={"mode": "exec", "script": str(script), "cname_delegation": False}),
        context(tmp_path))
    with pytest.raises(Exception, match="exited 3: provider said no") as caught:
        issuer.issue(request(("hook.contoso.test",)))
    assert getattr(caught.value, "name", None) == "hook.contoso.test"


def test_standalone_listener_serves_only_tokens_and_only_while_needed() -> None:
    import urllib.error
    import urllib.request

    from certkeeper.issuers.acme.solvers.http01 import StandaloneHttp01
    from tests.fixtures.core import free_port

    port = free_port()
    solver = StandaloneHttp01("127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    solver.present("a.contoso.test", "tokenA", "tokenA.thumb")
    solver.present("b.contoso.test", "tokenB", "tokenB.thumb")
    with urllib.request.urlopen(f"{base}/.well-known/acme-challenge/tokenA", timeout=5) as response:
        assert response.read() == b"tokenA.thumb"
    for path in ("/", "/.well-known/acme-challenge/other", "/tokenA", "/.well-known/acme-challenge/"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + path, timeout=5)
        assert caught.value.code == 404
        caught.value.close()
    solver.cleanup("a.contoso.test", "tokenA", "tokenA.thumb")
    with urllib.request.urlopen(f"{base}/.well-known/acme-challenge/tokenB", timeout=5) as response:
        assert response.read() == b"tokenB.thumb"  # still up for the other order
    solver.cleanup("b.contoso.test", "tokenB", "tokenB.thumb")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/.well-known/acme-challenge/tokenB", timeout=2)


def test_the_network_is_a_seam_every_request_goes_through(pebble: Pebble, tmp_path: Path) -> None:
    """AcmeIssuer(network=...) takes another Network class: here one that records each POST, so
    a test (or a diagnostic run) sees the protocol exchange one issuance makes."""
    from certkeeper.issuers.acme.client import Network
    from certkeeper.issuers.acme.options import AcmeOptions

    posted: list[str] = []

    class Recording(Network):
        def post(self, *args: Any, **kwargs: Any) -> Any:
            posted.append(str(args[0]))
            return super().post(*args, **kwargs)

    parsed = AcmeOptions.model_validate(options(pebble))
    issuer = AcmeIssuer("pebble", parsed, context(tmp_path), network=Recording)
    issuer.issue(request(("seam.contoso.test",)))
    new_orders = [url for url in posted if url.endswith("/order-plz")]
    assert len(new_orders) == 1, posted
    assert any("/finalize-order/" in url for url in posted)
