"""What every plugin receives, and how a plugin class is found from its ``type``.

Each role package keeps the explicit registry of its built-in plugins (``ISSUERS`` in
:mod:`certkeeper.issuers`, ``BINDERS`` in :mod:`certkeeper.binders`, ``NOTIFIERS`` in
:mod:`certkeeper.notifiers`): a ``type`` string from the config mapped to ``"module:Class"``. The
module is imported only when a plugin of that type is built, so ``certkeeper --help`` stays fast.
Nothing registers itself as an import side effect: to add a plugin, add a line there, and a
conformance line (``_: type[Issuer] = MyIssuer``) in its module so mypy checks it fits its role.
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


def load_plugin(registry: Mapping[str, str], kind: str, what: str) -> Any:
    """Import the class registered for ``kind`` in ``registry`` (``"module:Class"``).

    The role packages wrap this in typed loaders (:func:`certkeeper.issuers.load_issuer`,
    :func:`certkeeper.binders.load_binder`, :func:`certkeeper.notifiers.load_notifier`), whose
    registries are the explicit lists of built-in plugins.

    Raises:
        ConfigError: no plugin of that type (the message lists the known ones).
    """
    try:
        target = registry[kind]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {what} type {kind!r} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
