"""What every plugin receives, and the explicit registries of built-in plugins.

Registries map a ``type`` string from the config to ``"module:Class"``; the module is imported only
when a plugin of that type is built, so ``certkeeper --help`` stays fast. Nothing registers itself
as an import side effect: to add a plugin, add a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from certkeeper.clock import Clock
from certkeeper.errors import ConfigError


class StateStore(Protocol):
    """Durable key/value state for one plugin instance, encrypted at rest by the store.

    Used for the built-in CA's keys, ACME account keys, and similar material.
    """

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str = "") -> list[str]: ...


class MemoryState:
    """A :class:`StateStore` in a dict, for tests and dry runs."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.data if key.startswith(prefix))


def _no_secrets(reference: str) -> str:
    raise ConfigError(f"secret reference {reference.split(':', 1)[0]}:... cannot be resolved here")


@dataclass(frozen=True)
class PluginContext:
    """Dependencies handed to a plugin's ``from_options``.

    ``resolve_secret`` turns a reference (``env:VAR``, ``file:PATH``, ``secret:NAME``) into its
    value; plugins call it at use time and never log the result.
    """

    clock: Clock
    state: StateStore
    data_dir: Path
    resolve_secret: Callable[[str], str] = _no_secrets


ISSUERS: Mapping[str, str] = {
    "internal-ca": "certkeeper.issuers.internal_ca:InternalCA",
    "acme": "certkeeper.issuers.acme.issuer:AcmeIssuer",
    "adcs": "certkeeper.issuers.adcs:AdcsIssuer",
}

BINDERS: Mapping[str, str] = {
    "files": "certkeeper.binders.files:FilesBinder",
    "haproxy": "certkeeper.binders.haproxy:HaproxyBinder",
    "iis": "certkeeper.binders.iis:IisBinder",
    "exchange": "certkeeper.binders.exchange:ExchangeBinder",
}

NOTIFIERS: Mapping[str, str] = {
    "email": "certkeeper.notifiers.email:EmailNotifier",
    "slack": "certkeeper.notifiers.slack:SlackNotifier",
    "webhook": "certkeeper.notifiers.webhook:WebhookNotifier",
    "teams": "certkeeper.notifiers.teams:TeamsNotifier",
    "apprise": "certkeeper.notifiers.apprise_notifier:AppriseNotifier",
}


def load_class(registry: Mapping[str, str], kind: str, what: str) -> Any:
    """Import the class registered for ``kind``; a clear ConfigError if there is none."""
    try:
        target = registry[kind]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {what} type {kind!r} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)
