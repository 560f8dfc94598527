"""The ``files`` binder: PEM and PFX files for a web server, then a reload command, then proof.

Example binding::

    [[certificates.bindings]]
    type = "files"
    cert = "/etc/nginx/tls/mail.crt"
    fullchain = "/etc/nginx/tls/mail.fullchain.pem"
    key = "/etc/nginx/tls/mail.key"
    reload = ["systemctl", "reload", "nginx"]   # or a string, split without a shell
    verify = ["127.0.0.1:443"]

Every new file is written and fsynced beside its target first, then all are renamed into place
one right after the other (:func:`~certkeeper.atomicfile.atomic_write_all`), with mode 0600 (``mode``;
a file holding the key may never grant group or world access), owned by the user running
certkeeper; folders it creates are 0700, or 0750 with ``group`` (which then owns them and the
files). The previous contents are kept in memory for the whole deploy: when the reload command
fails, or when the endpoints still do not serve the new certificate after the settle time, the
previous files are put back, the reload command runs again, and a
:class:`~certkeeper.errors.BindError` (or :class:`~certkeeper.errors.VerifyError`) names the step.

A kill between two renames can leave a new certificate beside the old key. The deployment is then
not recorded as done, so the next run deploys again and writes the whole set; before that it
removes the temp files the killed run left (they may hold a key), and if what it finds on disk is
such a mismatched pair it rolls back, when it must, to the previous certificate rather than to
that pair.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from certkeeper.atomicfile import atomic_write_all, remove_stale_temps
from certkeeper.binders import probe
from certkeeper.binders.snapshots import (
    command_argv,
    restore_snapshot,
    run_command,
    take_snapshot,
)
from certkeeper.config import validate_options
from certkeeper.errors import BindError, CertkeeperError, ConfigError, VerifyError
from certkeeper.model import Bundle, Verification
from certkeeper.pki.keys import load_private_key, public_key_der
from certkeeper.pki.parse import load_certificates, pem_blocks
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
    #: permission bits of the files; files holding the key may not grant group or world access
    mode: int = Field(default=0o600, ge=0, le=0o777)
    #: a group (name or id) owning the files and the folders certkeeper creates (0750 then)
    group: str | int | None = None
    #: argv list, or a string split like a shell would without running one (see reload_shell)
    reload: str | list[str] | None = None
    reload_shell: bool = False
    reload_timeout: float = Field(default=30, gt=0)
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=15, ge=0)
    probe_timeout: float = Field(default=10, gt=0)

    @field_validator("mode")
    @classmethod
    def _private_key_stays_private(cls, mode: int, info: ValidationInfo) -> int:
        # key, combined and pfx are declared before mode, so they are validated already
        holds_key = any(info.data.get(kind) for kind in ("key", "combined", "pfx"))
        problem = key_mode_problem(mode, holds_key=holds_key)
        if problem:
            raise ValueError(problem)
        return mode


def key_mode_problem(mode: int, *, holds_key: bool) -> str | None:
    """Why ``mode`` may not be used for files holding a private key, or None."""
    if holds_key and mode & 0o077:
        return (f"{mode:#o} ({mode}) gives the group or everyone access to the private key; use 0o600 "
                "(or 0o400): the server reading the key starts as root")
    return None


def group_id(group: str | int, *, where: str) -> int:
    """The id of ``group`` (a name or a number); ConfigError naming ``where`` if unknown."""
    if isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    if sys.platform == "win32":
        raise ConfigError(f"{where}: file groups are a POSIX feature")
    import grp

    try:
        return int(grp.getgrnam(group).gr_gid)
    except KeyError:
        raise ConfigError(f"{where}: no group named {group!r}") from None


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
        group: int | None = None,
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
        problem = key_mode_problem(mode, holds_key=any((key, combined, pfx)))
        if problem:
            raise ConfigError(f"bindings.{name}.mode: {problem}")
        self.mode = mode
        self.group = group
        self.dir_mode = 0o750 if group is not None else 0o700
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
            group=group_id(opts.group, where=f"bindings.{name}.group") if opts.group is not None else None,
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
        extra = {"cert": bundle.certificate_id, "binding": self.name}
        for path in self.paths.values():
            if path is not None and (stale := remove_stale_temps(path)):
                log.warning("%s: removed %d temp file(s) a killed run left beside %s", self.name, len(stale),
                            path, extra=extra)
        wanted = self.contents(bundle)
        snapshot = take_snapshot(wanted)
        if previous is not None and not self.holds_one_pair(snapshot):
            # a run killed between two renames left a new certificate beside the old key: never
            # put that back; the previous certificate is the state to return to
            log.warning("%s: the files on disk are not one certificate and its key; repairing", self.name,
                        extra=extra)
            snapshot = dict(self.contents(previous))
        try:
            atomic_write_all(wanted, self.mode, group=self.group, dir_mode=self.dir_mode)
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

    def holds_one_pair(self, files: Mapping[Path, bytes | None]) -> bool:
        """Whether ``files`` (path -> contents, None if absent) hold one certificate and its key:
        the leaf of every certificate file present has the public key of every key file present
        (a PFX is one file, consistent by itself; absent files are not compared)."""
        def contents(kinds: tuple[str, ...]) -> list[bytes | None]:
            return [files.get(path) for kind in kinds if (path := self.paths[kind]) is not None]

        leaves, keys = contents(("cert", "fullchain", "combined")), contents(("key", "combined"))
        try:
            publics = {public_key_der(load_certificates(data, what="certificate file")[0].public_key())
                       for data in leaves if data is not None}
            publics |= {public_key_der(load_private_key(_key_block(data), what="key file"))
                        for data in keys if data is not None}
        except CertkeeperError:
            return False
        return len(publics) <= 1

    def _roll_back(self, snapshot: Mapping[Path, bytes | None], extra: Mapping[str, str]) -> str:
        problems = restore_snapshot(snapshot, self.mode, group=self.group, dir_mode=self.dir_mode)
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


def _key_block(data: bytes) -> bytes:
    """The private key block of a PEM file that may also hold certificates (``combined``)."""
    for block in pem_blocks(data, what="key file"):
        if block.label.endswith("PRIVATE KEY"):
            return block.pem
    return data
