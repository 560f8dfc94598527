"""What every part of the service shares: the config, the store, the clock, this node, the plugins."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from certkeeper.binders import Binder, load_binder
from certkeeper.clock import Clock
from certkeeper.cluster import Holder, Leases
from certkeeper.config import Config
from certkeeper.errors import CertkeeperError, ConfigError
from certkeeper.issuers import Issuer, load_issuer
from certkeeper.notifiers import Notifier, load_notifier
from certkeeper.plugins import PluginContext
from certkeeper.store import secrets
from certkeeper.store.unit import Store

log = logging.getLogger(__name__)

#: how long one issuance may hold a certificate's row lease before another process may take over
#: (the daemon uses its shorter lease TTL and extends it with every heartbeat)
ISSUE_LEASE_TTL = timedelta(minutes=15)


@dataclass
class ServiceContext:
    """The service's shared dependencies; plugins are built on first use and kept."""

    config: Config
    store: Store
    clock: Clock
    node: str
    holder: Holder
    leases: Leases
    issue_lease_ttl: timedelta = ISSUE_LEASE_TTL
    #: issuers by name, built from the config on first use; one put here is used instead (a
    #: program embedding certkeeper, or a test standing in a failing CA)
    issuers: dict[str, Issuer] = field(default_factory=dict)

    def resolve_secret(self, reference: str) -> str:
        """``env:VAR``, ``file:PATH``, ``secret:NAME``; anything else is the literal value."""
        scheme, _, rest = reference.partition(":")
        if scheme == "env" and rest:
            value = os.environ.get(rest)
            if value is None:
                raise ConfigError(f"environment variable {rest} (a secret reference) is not set")
            return value
        if scheme == "file" and rest:
            try:
                return Path(rest).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {rest}: {exc.strerror}") from None
        if scheme == "secret" and rest:
            with self.store.session() as session:
                return secrets.get(session, self.store.sealer, rest)
        return reference

    def plugin_context(self, namespace: str) -> PluginContext:
        return PluginContext(
            clock=self.clock,
            state=secrets.PluginState(self.store, namespace),
            data_dir=self.config.data_dir,
            resolve_secret=self.resolve_secret,
        )

    def issuer(self, name: str) -> Issuer:
        """The issuer configured as ``name`` (built once per service)."""
        if name not in self.issuers:
            kind, options = self.config.issuer_table(name)
            self.issuers[name] = load_issuer(kind).from_options(name, options, self.plugin_context(f"issuer:{name}"))
        return self.issuers[name]

    def binder(self, cert_id: str, key: str, binding: Mapping[str, Any]) -> Binder:
        """A binder for one binding of a certificate (its state is namespaced per binding)."""
        options = {k: v for k, v in binding.items() if k not in ("type", "name", "node")}
        cls = load_binder(str(binding.get("type", "")))
        return cls.from_options(key, options, self.plugin_context(f"binder:{cert_id}:{key}"))

    def notifiers(self) -> dict[str, Notifier]:
        """Every configured notifier that can be built; a broken one is logged and skipped (its
        alerts wait in the outbox)."""
        built: dict[str, Notifier] = {}
        for name, table in self.config.settings.notifiers.items():
            try:
                cls = load_notifier(table.type)
                built[name] = cls.from_options(name, table.options(), self.plugin_context(f"notifier:{name}"))
            except CertkeeperError as exc:
                log.error("notifier %s cannot be used: %s", name, exc, extra={"notifier": name})
        return built

    def notifier_names(self) -> list[str]:
        settings = self.config.settings
        return list(settings.alerts.notifiers) or sorted(settings.notifiers)
