"""What is under management: the config's certificates synced into the store, names, ids.

The config is the truth for ``[[certificates]]``; the CLI adds certificates of its own
(``certkeeper issue NAMES``). A certificate removed from the config stays stored (its revisions
and keys are history an operator may still need) but is no longer deployed, and ``list`` says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from certkeeper import hostnames
from certkeeper.errors import ConfigError, InputError, InvalidName, InvalidNames
from certkeeper.hostnames import NamePolicy
from certkeeper.model import KeyType
from certkeeper.service.context import ServiceContext
from certkeeper.store import certificates

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from certkeeper.config import CertificateSettings

log = logging.getLogger(__name__)

#: ids name rows, log lines and plugin state: letters, digits, '.', '_', '-' (at most 64)
CERTIFICATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: where a certificate came from: the config, the CLI, an import, or a config that dropped it
SOURCE_CONFIG = "config"
SOURCE_CLI = "cli"
SOURCE_IMPORT = "import"
SOURCE_UNCONFIGURED = "unconfigured"


def check_certificate_id(cert_id: str) -> str:
    """The id itself, or InputError saying what an id may hold."""
    if not CERTIFICATE_ID.match(cert_id):
        raise InputError(
            f"certificate id {cert_id!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return cert_id


def certificate_id_for(names: Sequence[str]) -> str:
    """A readable default id: the first name (``*`` spelled ``wildcard``)."""
    return names[0].replace("*", "wildcard")[:64]


def binding_key(binding: Mapping[str, Any], index: int) -> str:
    """A binding's name within its certificate: its ``name``, else ``type#index``."""
    return str(binding.get("name") or f"{binding.get('type', 'binding')}#{index}")


class Specs:
    """Syncs the config into the store and plans the names of a certificate."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    def plan_names(self, raw: Sequence[str], issuer_name: str) -> tuple[str, ...]:
        """The canonical names, checked against what ``issuer_name`` may sign."""
        issuer = self.context.issuer(issuer_name)
        return hostnames.normalize_names(raw, policy=issuer.name_policy)

    def sync_config(self) -> list[str]:
        """Put every ``[[certificates]]`` of the config under management (or update its spec).

        Writes only what changed, so commands that only read work on a full disk. A certificate
        the config no longer lists is marked ``unconfigured``: kept, never deployed again.
        """
        self.check_bindings()
        store, now = self.context.store, self.context.clock.now()
        configured_certificates = self.context.config.settings.certificates
        with store.session() as session:  # one read; a write only for what changed
            stored = certificates.find_many(session, [cert.id for cert in configured_certificates])
        ids = []
        for index, cert in enumerate(configured_certificates):
            names = self._config_names(index, cert.names, cert.issuer)
            renew_before = int(cert.renew_before_days * 86400) if cert.renew_before_days else None
            # as JSON stores them (lists, not tuples), so an unchanged binding compares equal
            bindings = [binding.model_dump(mode="json", exclude_none=True) for binding in cert.bindings]
            ids.append(cert.id)
            if certificates.spec_changes(
                stored.get(cert.id), names=names, issuer=cert.issuer, key_type=cert.key_type.value,
                source=SOURCE_CONFIG, renew_before_seconds=renew_before, bindings=bindings,
            ) is None:
                continue

            def upsert(session: Connection, cert: CertificateSettings = cert, names: tuple[str, ...] = names,
                       renew_before: int | None = renew_before, bindings: list[dict[str, Any]] = bindings) -> bool:
                return certificates.upsert(
                    session, cert.id, names=names, issuer=cert.issuer, key_type=cert.key_type.value,
                    source=SOURCE_CONFIG, now=now, renew_before_seconds=renew_before, bindings=bindings,
                )

            store.run(upsert)
        configured = set(ids)
        with store.session() as session:
            for cert_id, source in certificates.sources(session):
                if source == SOURCE_CONFIG and cert_id not in configured:
                    log.warning("%s is no longer in the config: kept in the store, no longer deployed", cert_id,
                                extra={"cert": cert_id})
                    certificates.mark_source(session, cert_id, SOURCE_UNCONFIGURED)
        return ids

    def check_bindings(self) -> None:
        """Build every configured binding once, so a typo in its options (``relaod``) or an unknown
        binding type is a config error naming its key path before anything is issued.

        Building a binder has no side effects (plugins validate in ``from_options``); secrets are
        resolved later, when the binder uses them.
        """
        for index, cert in enumerate(self.context.config.settings.certificates):
            for position, binding in enumerate(cert.bindings):
                options = binding.model_dump(exclude_none=True)
                key = binding_key(options, position)
                try:
                    self.context.binder(cert.id, key, options)
                except ConfigError as exc:
                    detail = str(exc).replace(f"bindings.{key}.", "").replace(f"bindings.{key}: ", "")
                    raise ConfigError(f"certificates[{index}].bindings[{position}]: {detail}") from None

    def _config_names(self, index: int, raw: Sequence[str], issuer_name: str) -> tuple[str, ...]:
        try:
            return self.plan_names(raw, issuer_name)
        except InvalidName as exc:
            errors = exc.errors if isinstance(exc, InvalidNames) else (exc,)
            parts = []
            for error in errors:
                where = f"certificates[{index}].names"
                if error.name in raw:
                    where += f"[{list(raw).index(error.name)}]"
                parts.append(f"{where}: {error}")
            raise ConfigError("; ".join(parts)) from exc

    def default_names(self) -> tuple[str, ...]:
        """Names from ``[outlook_anywhere]`` when ``certkeeper issue`` is given none."""
        oa = self.context.config.settings.outlook_anywhere
        if oa is None:
            raise ConfigError(
                "no names given: pass them (certkeeper issue mail.contoso.com autodiscover.contoso.com) "
                "or configure [outlook_anywhere] external_host and domains"
            )
        from certkeeper.outlook.planner import plan_from_settings

        # the external host, autodiscover.<domain> per accepted domain, the legacy name in
        # coexistence; `certkeeper plan` shows the same plan with its warnings
        names = list(plan_from_settings(oa).names)
        names.extend(name for name in oa.extra_names if name not in names)
        return tuple(names)

    def target_for_issue(
        self, raw_names: Sequence[str], *, cert_id: str | None, issuer: str | None
    ) -> tuple[str, tuple[str, ...], str]:
        """Which certificate ``certkeeper issue`` means: (id, names, issuer).

        No names: the configured certificate whose names ``[outlook_anywhere]`` plans (or the
        only configured one), else those names under a new id. Names that a managed certificate
        already has: that certificate, under its id. Names another managed certificate already
        covers: refused, naming it, unless ``cert_id`` asks for a second certificate.
        """
        if cert_id is not None:
            check_certificate_id(cert_id)
        with self.context.store.session() as session:
            existing = certificates.find(session, cert_id) if cert_id else None
            managed = certificates.with_names(session)
            existing_issuer = existing.issuer if existing is not None else None
        if not raw_names:
            configured = self.context.config.settings.certificates
            if cert_id is None and len(configured) == 1 and self.context.config.settings.outlook_anywhere is None:
                raw_names = configured[0].names
            else:
                raw_names = self.default_names()
        issuer_name = issuer or existing_issuer or self._issuer_of_same_names(raw_names, managed) or "internal"
        names = self.plan_names(raw_names, issuer_name)
        if cert_id is None:
            wanted = set(names)
            same = [other for other, other_names, _ in managed if set(other_names) == wanted]
            if same:
                cert_id = sorted(same, key=lambda other: (other != self._configured_id(other), other))[0]
            else:
                overlapping = sorted(
                    (other, sorted(wanted & set(other_names))) for other, other_names, _ in managed
                    if wanted & set(other_names)
                )
                if overlapping:
                    other, shared = overlapping[0]
                    raise InputError(
                        f"{', '.join(shared)} {'is' if len(shared) == 1 else 'are'} already on certificate "
                        f"{other!r}: renew it with `certkeeper renew {other} --force`, change its names in "
                        "the config, or pass --id NEW-ID to manage a second certificate"
                    )
                cert_id = certificate_id_for(names)
                taken = [other_names for other, other_names, _ in managed if other == cert_id]
                if taken:
                    # `certkeeper issue ID` read as a host name: never give that certificate new names
                    raise InputError(
                        f"{cert_id!r} is the id of the certificate for {', '.join(taken[0])}: issue that one "
                        f"with `certkeeper renew {cert_id} --force`; for a certificate named "
                        f"{', '.join(names)}, pass --id NEW-ID"
                    )
        return cert_id, names, issuer_name

    def _configured_id(self, cert_id: str) -> str:
        return cert_id if self.context.config.certificate(cert_id) is not None else ""

    def _issuer_of_same_names(
        self, raw_names: Sequence[str], managed: list[tuple[str, tuple[str, ...], str]]
    ) -> str | None:
        """The issuer of a configured certificate with exactly these names, if any."""
        try:
            wanted = {hostnames.normalize_name(name, policy=NamePolicy.PRIVATE) for name in raw_names}
        except InvalidName:
            return None
        for cert in self.context.config.settings.certificates:
            try:
                names = {hostnames.normalize_name(name, policy=NamePolicy.PRIVATE) for name in cert.names}
            except InvalidName:
                continue
            if names == wanted:
                return cert.issuer
        return None

    def put_under_management(
        self, cert_id: str, names: tuple[str, ...], issuer_name: str, key_type: KeyType | None
    ) -> None:
        """Create or update the spec ``certkeeper issue`` asked for (keeping its other settings)."""
        store, now = self.context.store, self.context.clock.now()

        def upsert(session: Connection) -> bool:
            existing = certificates.find(session, cert_id)
            chosen = key_type or (KeyType(existing.key_type) if existing else KeyType.RSA2048)
            return certificates.upsert(
                session, cert_id, names=names, issuer=issuer_name, key_type=chosen.value,
                source=existing.source if existing else SOURCE_CLI, now=now,
                renew_before_seconds=existing.renew_before_seconds if existing else None,
            )

        store.run(upsert)
