"""Notifiers are plain senders; the persistent outbox (certkeeper.outbox) retries them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, cast, runtime_checkable

from certkeeper.model import Event
from certkeeper.plugins import PluginContext, load_plugin


@runtime_checkable
class Notifier(Protocol):
    """Sends one event; raises NotifyError (with retry_after when the endpoint asked to wait)."""

    name: str

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self: ...

    def notify(self, event: Event) -> None: ...


@runtime_checkable
class SupportsPacing(Protocol):
    """A notifier whose endpoint takes at most one message per ``min_interval`` seconds (Slack)."""

    min_interval: float


#: the built-in notifiers: config ``type`` -> "module:Class"
NOTIFIERS: Mapping[str, str] = {
    "email": "certkeeper.notifiers.email:EmailNotifier",
    "slack": "certkeeper.notifiers.slack:SlackNotifier",
    "webhook": "certkeeper.notifiers.webhook:WebhookNotifier",
    "teams": "certkeeper.notifiers.teams:TeamsNotifier",
    "apprise": "certkeeper.notifiers.apprise_notifier:AppriseNotifier",
}


def load_notifier(kind: str) -> type[Notifier]:
    """The notifier class for a config ``type``; ConfigError names the known types."""
    return cast("type[Notifier]", load_plugin(NOTIFIERS, kind, "notifier"))
