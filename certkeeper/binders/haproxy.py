"""The ``haproxy`` binder: swap a certificate in a running HAProxy through its runtime API.

Example binding::

    [[certificates.bindings]]
    type = "haproxy"
    socket = "/run/haproxy/admin.sock"      # or "tcp:127.0.0.1:9999"
    crt = "/etc/haproxy/certs/mail.pem"     # exactly the path used in the bind line's crt
    verify = ["127.0.0.1:443"]

Steps (HAProxy 2.2+ runtime API, "set ssl cert" / "commit ssl cert"): open a transaction with
``set ssl cert <crt> <<`` and the PEM (leaf, chain, key), ``commit ssl cert <crt>``; on any error
``abort ssl cert <crt>``. No reload, no restart: existing connections keep going. Then the same
PEM is written to ``<crt>`` atomically (0600, owned by the user running certkeeper) so a restart
serves it too, and the endpoints are probed. If writing or verification fails, the previous PEM is
pushed back the same way and the file restored. The socket needs ``level admin``.

The key and its certificate are one file, so a kill can never leave them mismatched; the temp file
a killed write leaves (it holds a key) is removed by the next deploy.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from certkeeper.atomicfile import atomic_write, remove_stale_temps
from certkeeper.binders import probe
from certkeeper.binders.files import key_mode_problem
from certkeeper.binders.snapshots import restore_snapshot, take_snapshot
from certkeeper.config import validate_options
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle, Verification
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)


class HaproxyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: str
    crt: Path
    timeout: float = Field(default=10, gt=0)
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=10, ge=0)
    probe_timeout: float = Field(default=10, gt=0)
    #: permission bits of the crt file, which holds the key: no group or world access
    mode: int = Field(default=0o600, ge=0, le=0o777)

    @field_validator("mode")
    @classmethod
    def _private_key_stays_private(cls, mode: int) -> int:
        problem = key_mode_problem(mode, holds_key=True)
        if problem:
            raise ValueError(problem)
        return mode


class RuntimeApi:
    """One command per connection to HAProxy's stats socket (unix path or ``tcp:host:port``)."""

    def __init__(self, address: str, *, timeout: float = 10) -> None:
        self.address = address
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        if self.address.startswith("tcp:") or (":" in self.address and not self.address.startswith("/")):
            host, _, port = self.address.removeprefix("tcp:").rpartition(":")
            return socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
        if sys.platform == "win32":  # Python on Windows has no AF_UNIX sockets
            raise OSError(errno.EAFNOSUPPORT, "a unix socket path needs Linux; use tcp:host:port")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def command(self, line: str, payload: bytes | None = None) -> str:
        """Send one command (with an optional ``<<`` payload) and return HAProxy's answer."""
        data = line.encode()
        if payload is not None:
            # the payload ends at the first empty line, so it must not contain one
            body = b"\n".join(part for part in payload.replace(b"\r\n", b"\n").split(b"\n") if part.strip())
            data += b" <<\n" + body + b"\n\n"
        else:
            data += b"\n"
        try:
            with self._connect() as sock:
                sock.sendall(data)
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise BindError(f"HAProxy runtime API {self.address}: {exc.strerror or exc}") from None
        return b"".join(chunks).decode(errors="replace").strip()


class HaproxyBinder(probe.ProbedEndpoints):
    """Sets the certificate through the runtime API, then keeps the file in step."""

    def __init__(
        self,
        name: str,
        *,
        socket: str,
        crt: Path,
        timeout: float = 10,
        verify: Sequence[str] = (),
        settle_seconds: float = 10,
        probe_timeout: float = 10,
        mode: int = 0o600,
        prober: Callable[[Bundle], Verification] | None = None,
    ) -> None:
        self.name = name
        self.api = RuntimeApi(socket, timeout=timeout)
        self.crt = Path(crt)
        if not self.crt.is_absolute():
            raise ConfigError(f"bindings.{name}.crt: must be the absolute path used in haproxy.cfg")
        self._setup_probe(verify, settle_seconds, probe_timeout, prober)
        problem = key_mode_problem(mode, holds_key=True)
        if problem:
            raise ConfigError(f"bindings.{name}.mode: {problem}")
        self.mode = mode

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        opts: HaproxyOptions = validate_options(HaproxyOptions, options, where=f"bindings.{name}")
        return cls(
            name,
            socket=opts.socket,
            crt=opts.crt,
            timeout=opts.timeout,
            verify=opts.verify,
            settle_seconds=opts.settle_seconds,
            probe_timeout=opts.probe_timeout,
            mode=opts.mode,
        )

    @staticmethod
    def pem(bundle: Bundle) -> bytes:
        return bundle.fullchain_pem + bundle.key_pem

    def set_certificate(self, pem: bytes) -> None:
        """``set ssl cert`` + ``commit ssl cert``; ``abort ssl cert`` when either fails."""
        path = str(self.crt)
        answer = self.api.command(f"set ssl cert {path}", pem)
        if "Transaction created" not in answer and "Transaction updated" not in answer:
            self._abort(path)
            raise BindError(f"{self.name}: set ssl cert {path}: {_first_line(answer)}")
        answer = self.api.command(f"commit ssl cert {path}")
        if "Success!" not in answer:
            self._abort(path)
            raise BindError(f"{self.name}: commit ssl cert {path}: {_last_line(answer)}")

    def _abort(self, path: str) -> None:
        try:
            self.api.command(f"abort ssl cert {path}")
        except BindError as exc:
            log.warning("%s: abort ssl cert failed: %s", self.name, exc)

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None:
        if stale := remove_stale_temps(self.crt):
            log.warning("%s: removed %d temp file(s) a killed run left beside %s", self.name, len(stale), self.crt)
        snapshot = take_snapshot([self.crt])
        old_pem = snapshot[self.crt]
        new_pem = self.pem(bundle)
        self.set_certificate(new_pem)
        log.info("%s: HAProxy now holds %s in memory", self.name, bundle.fingerprint[:16])
        try:
            atomic_write(self.crt, new_pem, self.mode)
        except OSError as exc:
            problems = self._roll_back(old_pem, snapshot)
            raise BindError(f"{self.name}: write {self.crt}: {exc.strerror or exc}{problems}") from None
        if self.endpoints:
            verification = self.verify(bundle)
            if not verification.ok:
                problems = self._roll_back(old_pem, snapshot)
                raise VerifyError(
                    f"{self.name}: verify: {verification.summary()}; previous certificate restored{problems}"
                )

    def _roll_back(self, old_pem: bytes | None, snapshot: Mapping[Path, bytes | None]) -> str:
        problems = restore_snapshot(snapshot, self.mode)
        if old_pem is not None:
            try:
                self.set_certificate(old_pem)
            except BindError as exc:
                problems.append(str(exc))
        return f" (rollback problems: {'; '.join(problems)})" if problems else ""

    def retire(self, previous: Bundle, current: Bundle) -> None:
        """Nothing to remove: the same path now holds ``current``."""


def _first_line(text: str) -> str:
    return (text.splitlines() or [""])[0][:200]


def _last_line(text: str) -> str:
    return (text.splitlines() or [""])[-1][:200]
