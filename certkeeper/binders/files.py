"""The ``files`` binder: PEM and PFX files for a web server, then a reload command, then proof.

Example binding::

    [[certificates.bindings]]
    type = "files"
    cert = "/etc/nginx/tls/mail.crt"
    fullchain = "/etc/nginx/tls/mail.fullchain.pem"
    key = "/etc/nginx/tls/mail.key"
    reload = ["systemctl", "reload", "nginx"]   # or a string, split without a shell
    verify = ["127.0.0.1:443"]

Each file is replaced atomically (temp file in the same folder, fsync, rename, fsync of the
folder) with mode 0600. The previous contents are kept in memory for the whole deploy: when the
reload command fails, or when the endpoints still do not serve the new certificate after the
settle time, the previous files are put back, the reload command runs again, and a
:class:`~certkeeper.errors.BindError` (or :class:`~certkeeper.errors.VerifyError`) names the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from certkeeper.atomicfile import atomic_write
from certkeeper.binders import probe
from certkeeper.binders.snapshots import (
    command_argv,
    restore_snapshot,
    run_command,
    take_snapshot,
)
from certkeeper.config import validate_options
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle, Verification
from certkeeper.pki.pkcs12.build import build_pfx
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)

Prober = Callable[[Bundle], Verification]


class FilesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert: Path | None = None
    chain: Path | None = None
    fullchain: Path | None = None
    key: Path | None = None
    #: the key and the full chain in one PEM (HAProxy's crt format)
    combined: Path | None = None
    pfx: Path | None = None
    #: secret reference (env:VAR, file:PATH, secret:NAME) or literal; required with pfx
    pfx_password: str | None = None
    pfx_encryption: Literal["aes256", "legacy"] = "aes256"
    pfx_friendly_name: str | None = None
    mode: int = Field(default=0o600, ge=0, le=0o777)
    #: argv list, or a string split like a shell would without running one (see reload_shell)
    reload: str | list[str] | None = None
    reload_shell: bool = False
    reload_timeout: float = Field(default=30, gt=0)
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=15, ge=0)
    probe_timeout: float = Field(default=10, gt=0)


class FilesBinder(probe.ProbedEndpoints):
    """Writes certificate files atomically, reloads, verifies, rolls back on failure."""

    def __init__(
        self,
        name: str,
        *,
        cert: Path | None = None,
        chain: Path | None = None,
        fullchain: Path | None = None,
        key: Path | None = None,
        combined: Path | None = None,
        pfx: Path | None = None,
        pfx_password: Callable[[], str] | None = None,
        pfx_encryption: Literal["aes256", "legacy"] = "aes256",
        pfx_friendly_name: str | None = None,
        mode: int = 0o600,
        reload: Sequence[str] | None = None,
        reload_timeout: float = 30,
        verify: Sequence[str] = (),
        settle_seconds: float = 15,
        probe_timeout: float = 10,
        prober: Prober | None = None,
    ) -> None:
        self.name = name
        self.paths = {
            "cert": cert,
            "chain": chain,
            "fullchain": fullchain,
            "key": key,
            "combined": combined,
            "pfx": pfx,
        }
        if not any(self.paths.values()):
            raise ConfigError(
                f"bindings.{name}: name at least one of cert, chain, fullchain, key, combined, pfx"
            )
        if pfx is not None and pfx_password is None:
            raise ConfigError(f"bindings.{name}.pfx_password: required when pfx is set")
        self._pfx_password = pfx_password
        self.pfx_encryption = pfx_encryption
        self.pfx_friendly_name = pfx_friendly_name
        self.mode = mode
        self.reload = list(reload) if reload else None
        self.reload_timeout = reload_timeout
        self._setup_probe(verify, settle_seconds, probe_timeout, prober)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        opts: FilesOptions = validate_options(FilesOptions, options, where=f"bindings.{name}")
        reload = command_argv(opts.reload, shell=opts.reload_shell) if opts.reload else None
        ref = opts.pfx_password
        return cls(
            name,
            cert=opts.cert,
            chain=opts.chain,
            fullchain=opts.fullchain,
            key=opts.key,
            combined=opts.combined,
            pfx=opts.pfx,
            pfx_password=(lambda: context.resolve_secret(ref)) if ref is not None else None,
            pfx_encryption=opts.pfx_encryption,
            pfx_friendly_name=opts.pfx_friendly_name,
            mode=opts.mode,
            reload=reload,
            reload_timeout=opts.reload_timeout,
            verify=opts.verify,
            settle_seconds=opts.settle_seconds,
            probe_timeout=opts.probe_timeout,
        )

    # ------------------------------------------------------------------ the contents

    def contents(self, bundle: Bundle) -> dict[Path, bytes]:
        """What each configured path should hold for ``bundle``."""
        out: dict[Path, bytes] = {}
        for kind, path in self.paths.items():
            if path is None:
                continue
            if kind == "cert":
                out[path] = bundle.cert_pem
            elif kind == "chain":
                out[path] = bundle.chain_pem
            elif kind == "fullchain":
                out[path] = bundle.fullchain_pem
            elif kind == "key":
                out[path] = bundle.key_pem
            elif kind == "combined":
                out[path] = bundle.fullchain_pem + bundle.key_pem
            elif kind == "pfx":
                assert self._pfx_password is not None
                out[path] = build_pfx(
                    bundle.key_pem,
                    bundle.cert_pem,
                    bundle.chain_pem,
                    password=self._pfx_password().encode(),
                    encryption=self.pfx_encryption,
                    friendly_name=(self.pfx_friendly_name or f"certkeeper {bundle.certificate_id}").encode(),
                )
        return out

    # ------------------------------------------------------------------ Binder

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None:
        """Write the files, reload, verify; on a failed reload or verification put the previous
        files back, reload again and raise (BindError / VerifyError naming the step)."""
        wanted = self.contents(bundle)
        snapshot = take_snapshot(wanted)
        extra = {"cert": bundle.certificate_id, "binding": self.name}
        try:
            for path, data in wanted.items():
                atomic_write(path, data, self.mode)
        except OSError as exc:
            self._roll_back(snapshot, extra)
            raise BindError(
                f"{self.name}: write files: {exc.filename or ''}: {exc.strerror or exc}"
            ) from None
        log.info("%s: wrote %d file(s)", self.name, len(wanted), extra=extra)
        if self.reload:
            try:
                run_command(self.reload, timeout=self.reload_timeout, step=f"{self.name}: reload")
            except BindError as exc:
                problems = self._roll_back(snapshot, extra)
                raise BindError(f"{exc}; previous files restored{problems}") from None
        if self.endpoints:
            verification = self.verify(bundle)
            if not verification.ok:
                problems = self._roll_back(snapshot, extra)
                raise VerifyError(
                    f"{self.name}: verify: {verification.summary()}; previous files restored{problems}"
                )

    def _roll_back(self, snapshot: Mapping[Path, bytes | None], extra: Mapping[str, str]) -> str:
        problems = restore_snapshot(snapshot, self.mode)
        if self.reload:
            try:
                run_command(
                    self.reload, timeout=self.reload_timeout, step=f"{self.name}: reload after rollback"
                )
            except BindError as exc:
                problems.append(str(exc))
                log.error("%s", exc, extra=dict(extra))
        log.warning("%s: rolled back to the previous files", self.name, extra=dict(extra))
        return f" (rollback problems: {'; '.join(problems)})" if problems else ""

    def retire(self, previous: Bundle, current: Bundle) -> None:
        """Nothing to remove: the files now hold ``current``."""
