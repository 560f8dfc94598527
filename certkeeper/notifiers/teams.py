"""Microsoft Teams through a Workflows (Power Automate) webhook: an Adaptive Card per event.

The envelope is the one Microsoft documents for the "When a Teams webhook request is received"
trigger (a ``message`` with one ``application/vnd.microsoft.card.adaptive`` attachment); the
workflow answers 202 Accepted. The legacy Office 365 connector webhooks are retired.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Self

from certkeeper.config import validate_options
from certkeeper.model import Event
from certkeeper.notifiers import render
from certkeeper.notifiers.http import (
    HttpTargetOptions,
    UrlPolicy,
    WebhookSender,
    check_literal_url,
    secret_option,
)
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)


class TeamsOptions(HttpTargetOptions):
    #: a secret reference (secret:NAME, env:VAR, file:PATH); a literal URL works with a warning
    webhook_url: str


def card(event: Event) -> dict[str, Any]:
    facts = render.facts(event)
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": event.title, "size": "Large", "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": event.message or "-", "wrap": True},
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts]},
    ]
    next_step = render.action(event)
    if next_step:
        body.append({"type": "TextBlock", "text": "What to do next", "weight": "Bolder", "wrap": True})
        body.append({"type": "TextBlock", "text": next_step, "wrap": True})
    body.append(
        {"type": "TextBlock", "text": f"certkeeper · {render.when(event.occurred_at)}", "isSubtle": True,
         "size": "Small", "wrap": True}
    )
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }


def message(event: Event) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card(event),
            }
        ],
    }


class TeamsNotifier:
    """Posts alerts to a Teams channel through a Workflows webhook."""

    def __init__(self, name: str, sender: WebhookSender) -> None:
        self.name = name
        self.sender = sender

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        parsed: TeamsOptions = validate_options(TeamsOptions, options, where=where)
        url = secret_option(parsed.webhook_url, context, where=where, key="webhook_url")
        policy = UrlPolicy(parsed, f"the Teams webhook for notifier {name!r}")
        check_literal_url(url, policy, f"{where}.webhook_url")
        return cls(name, WebhookSender(url, policy, context.clock))

    def notify(self, event: Event) -> None:
        self.sender.post(message(event))
        log.debug("sent %s to Teams", event.kind.value, extra={"notifier": self.name})
