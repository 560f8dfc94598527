"""Fakes and helpers shared by the tests: one of each, here.

Fakes stand in only where a test needs a CA that fails on purpose, a process that dies mid-way,
or a TLS probe for servers that cannot run on Linux (Exchange, IIS); everything else is real.
Server fixtures stay in ``tests/fixtures/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from certkeeper.errors import IssuanceError, IssuanceRejected
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers import Issuer
from certkeeper.model import Bundle, EndpointCheck, IssueRequest, IssueResult, Verification
from certkeeper.service import Service
from certkeeper.store import certificates, events
from certkeeper.store.certificates import Certificate
from certkeeper.store.events import Event as EventRow
from tests.fixtures.core import REPO_ROOT

T = TypeVar("T")


# -- waiting ------------------------------------------------------------------------------------


def wait_for(
    check: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "a condition",
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    ``check`` may raise to give up early (a server process that exited). After ``timeout``
    seconds: AssertionError naming ``what``, followed by ``context()`` (logs, say) when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{details}")
        time.sleep(interval)


# -- issuers that fail or die on cue -------------------------------------------------------------


class FlakyIssuer:
    """An Issuer that fails its first ``failures`` calls, and every call for a certificate in
    ``failing`` (retryable, or ``permanent``), else delegates to a real one; ``calls`` counts
    every attempt that reached it."""

    name_policy = NamePolicy.PRIVATE

    def __init__(self, real: Issuer, failures: int = 0, *, permanent: bool = False) -> None:
        self.name = real.name
        self.real, self.failures, self.permanent, self.calls = real, failures, permanent, 0
        self.failing: set[str] = set()

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: Any) -> FlakyIssuer:
        raise NotImplementedError("built by tests, not from a config")

    def issue(self, request: IssueRequest) -> IssueResult:
        self.calls += 1
        if self.calls <= self.failures or request.certificate_id in self.failing:
            if self.permanent:
                raise IssuanceRejected("the CA refused the names", problem="rejectedIdentifier")
            raise IssuanceError("CA unavailable (connection refused)", problem="serverInternal")
        return self.real.issue(request)

    def trust_anchors_pem(self) -> bytes:
        return self.real.trust_anchors_pem()


_: type[Issuer] = FlakyIssuer


class Killed(BaseException):
    """Unwinds a node that a test treats as killed: no ``except Exception`` in certkeeper catches
    it, so nothing after the point of death is recorded (as with SIGKILL)."""


class DiesAtTheCa:
    """An Issuer whose process "dies" while it waits for the CA: every call to ``issue`` reaches
    the real issuer (the CA receives the request), and whatever the CA answers is lost, by
    raising :class:`Killed`. Run it in a thread; the CA double decides how long the call hangs."""

    name_policy = NamePolicy.PRIVATE

    def __init__(self, real: Issuer) -> None:
        self.name = real.name
        self.real = real

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: Any) -> DiesAtTheCa:
        raise NotImplementedError("built by tests, not from a config")

    def issue(self, request: IssueRequest) -> IssueResult:
        dead = dataclasses.replace(request, save_checkpoint=lambda _data: None)  # a dead process saves nothing
        with contextlib.suppress(Exception):
            self.real.issue(dead)  # and whatever the CA answers is lost with it
        raise Killed("killed while waiting for the CA")

    def trust_anchors_pem(self) -> bytes:
        return self.real.trust_anchors_pem()


_dies: type[Issuer] = DiesAtTheCa


def stand_in(service: Service, name: str, make: Callable[[Issuer], Issuer]) -> Issuer:
    """Use ``make(real issuer)`` for issuer ``name`` in ``service``; returns the stand-in."""
    issuer = make(service.context.issuer(name))
    service.context.issuers[name] = issuer
    return issuer


class Doomed:
    """Runs ``work`` in a thread that the test kills later (see :class:`Killed`): ``stop()``
    waits for the thread to unwind and returns what it ended with."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.ended: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), name="doomed-node", daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:  # Killed, or what the test shows in its assertion
            self.ended = exc

    def stop(self, timeout: float = 30) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the doomed node did not unwind"
        return self.ended


# -- reading the store ---------------------------------------------------------------------------


def certificate_row(service: Service, cert_id: str) -> Certificate | None:
    with service.store.session() as session:
        return certificates.find(session, cert_id)


def recent_events(service: Service, cert_id: str | None = None, limit: int = 50) -> list[EventRow]:
    with service.store.session() as session:
        return events.recent(session, cert_id, limit)


# -- what a TLS endpoint serves -----------------------------------------------------------------


def served_fingerprint(endpoint: str, server_name: str) -> str:
    """SHA-256 of the leaf ``endpoint`` (host:port) presents for SNI ``server_name``: our own
    handshake, independent of certkeeper's probe."""
    host, _, port = endpoint.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


class FakeProbe:
    """Stands in for the TLS probe of the Windows binders (Exchange and IIS cannot run here):
    after a deploy, an endpoint serves the bundle it was asked about, unless it is ``stuck``
    (then it keeps serving what it served before, nothing at first); ``stuck_everywhere`` makes
    every endpoint stuck. ``calls`` records (fingerprint, endpoints) per verification."""

    def __init__(self, *, stuck_everywhere: bool = False) -> None:
        self.serving: dict[str, str] = {}
        self.stuck: set[str] = set()
        self.stuck_everywhere = stuck_everywhere
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, bundle: Bundle, endpoints: Iterable[str]) -> Verification:
        endpoints = tuple(endpoints)
        self.calls.append((bundle.fingerprint, endpoints))
        checks = []
        for endpoint in endpoints:
            if not self.stuck_everywhere and endpoint not in self.stuck:
                self.serving[endpoint] = bundle.fingerprint
            served = self.serving.get(endpoint)
            ok = served == bundle.fingerprint
            name = bundle.names[0] if bundle.names else ""
            checks.append(EndpointCheck(endpoint, name, ok, served, "ok" if ok else "serves another certificate"))
        return Verification(tuple(checks))


# -- a dns-01 exec hook ---------------------------------------------------------------------------

DNS_HOOK = """#!{python}
# certkeeper's dns-01 exec hook for the tests: publishes through pebble-challtestsrv's API.
import json, os, sys, time, urllib.request
action, fqdn, value = sys.argv[1:4]
assert os.environ["CERTKEEPER_ACME_FQDN"] == fqdn and os.environ["CERTKEEPER_ACME_VALUE"] == value
hang, started, log = {hang!r}, {started!r}, {log!r}
if action == "present" and hang and os.path.exists(hang):
    open(started, "w").close()
    time.sleep(600)  # until the process running the hook is killed
body = {{"host": fqdn, "value": value}} if action == "present" else {{"host": fqdn}}
verb = "set-txt" if action == "present" else "clear-txt"
request = urllib.request.Request("http://127.0.0.1:{port}/" + verb, data=json.dumps(body).encode())
urllib.request.urlopen(request, timeout=5).read()
if log:
    with open(log, "a") as out:
        out.write(f"{{action}} {{fqdn}} {{os.environ['CERTKEEPER_ACME_DOMAIN']}}\\n")
"""


def write_dns_hook(
    path: Path, management_port: int, *, hang: Path | None = None, started: Path | None = None,
    log: Path | None = None,
) -> Path:
    """Write an executable dns-01 exec hook (``hook present|cleanup FQDN VALUE``) that sets and
    clears TXT records in pebble-challtestsrv (its management API on ``management_port``).

    While the file ``hang`` exists, ``present`` touches ``started`` and hangs (a process killed
    mid-order); with ``log``, each call appends ``action fqdn certificate-name``.
    """
    if hang is not None and started is None:
        raise ValueError("a hanging hook needs a 'started' file to say it hangs")
    path.write_text(DNS_HOOK.format(python=sys.executable, port=management_port, hang=str(hang or ""),
                                    started=str(started or ""), log=str(log or "")))
    path.chmod(0o755)
    return path


# -- certkeeper in its own process -----------------------------------------------------------------


def start_certkeeper(
    *args: str, env: Mapping[str, str], log: Path, argv_prefix: tuple[str, ...] = (), new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``python -m certkeeper ARGS`` in the background, output appended to ``log``.

    ``env`` comes from :func:`tests.fixtures.core.certkeeper_env`; ``argv_prefix`` wraps the
    command (``unshare ...``); ``new_session`` puts it in its own process group, so that killing
    the group also kills its children (a hanging DNS hook).
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [*argv_prefix, sys.executable, "-m", "certkeeper", *args], env=dict(env), cwd=REPO_ROOT,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session,
        )


def stop_process(process: subprocess.Popen[Any], timeout: float = 60, *, terminate: bool = True) -> int:
    """SIGTERM (if still running and ``terminate``: once, a second one could land after the
    daemon restored the default handler), wait; SIGKILL after ``timeout`` s. Returns the exit
    status."""
    if terminate and process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)
