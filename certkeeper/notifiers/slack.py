"""Slack incoming webhooks: one Block Kit message per event, with a plain ``text`` fallback.

Slack answers 429 with ``Retry-After`` when posting faster than about one message per second per
webhook (Slack's rate-limit docs, "Posting messages: 1 per second"); the outbox honours both
(``min_interval`` below, and ``NotifyError.retry_after``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from certkeeper.config import validate_options
from certkeeper.model import Event
from certkeeper.notifiers import render
from certkeeper.notifiers.http import (
    HttpTargetOptions,
    SecretValue,
    UrlPolicy,
    WebhookSender,
    check_literal_url,
    secret_option,
)
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)

# Block Kit limits (api.slack.com/reference/block-kit/blocks)
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10


class SlackOptions(HttpTargetOptions):
    #: a secret reference (secret:NAME, env:VAR, file:PATH); a literal URL works with a warning
    webhook_url: str


def escape(text: str) -> str:
    """Slack mrkdwn escaping: only &, < and > are special (api.slack.com, "Escaping text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_MAX)}}


def blocks(event: Event) -> list[dict[str, Any]]:
    """The Block Kit message: header, summary, facts as fields, what to do next, context."""
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{escape(label)}*\n{escape(value)}", FIELD_MAX)}
        for label, value in render.facts(event)
    ][:FIELDS_MAX]
    result: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(event.title, HEADER_MAX)}},
        _section(escape(event.message or "-")),
        {"type": "section", "fields": fields},
    ]
    next_step = render.action(event)
    if next_step:
        result.append(_section(f"*What to do next*\n{escape(next_step)}"))
    result.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"certkeeper · {render.when(event.occurred_at)}"}],
        }
    )
    return result


def message(event: Event) -> dict[str, Any]:
    return {"text": _clip(render.plain_text(event), SECTION_MAX), "blocks": blocks(event)}


class SlackNotifier:
    """Posts alerts to a Slack incoming webhook."""

    #: seconds between two messages to the same webhook (the outbox paces to this)
    min_interval: ClassVar[float] = 1.0

    def __init__(self, name: str, sender: WebhookSender) -> None:
        self.name = name
        self.sender = sender

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        parsed: SlackOptions = validate_options(SlackOptions, options, where=where)
        url: SecretValue = secret_option(parsed.webhook_url, context, where=where, key="webhook_url")
        policy = UrlPolicy(parsed, f"the Slack webhook for notifier {name!r}")
        check_literal_url(url, policy, f"{where}.webhook_url")
        return cls(name, WebhookSender(url, policy, context.clock))

    def notify(self, event: Event) -> None:
        self.sender.post(message(event))
        log.debug("sent %s to Slack", event.kind.value, extra={"notifier": self.name})
