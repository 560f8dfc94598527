"""Notifiers are plain senders; the persistent outbox (certkeeper.outbox) retries them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, runtime_checkable

from certkeeper.model import Event
from certkeeper.plugins import PluginContext


@runtime_checkable
class Notifier(Protocol):
    """Sends one event; raises NotifyError (with retry_after when the endpoint asked to wait)."""

    name: str

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self: ...

    def notify(self, event: Event) -> None: ...
