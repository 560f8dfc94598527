"""A generic JSON webhook, signed with HMAC-SHA256 so the receiver can tell it came from us.

The body is the event as JSON (:func:`certkeeper.notifiers.render.to_json` plus ``id`` and
``title``). Every request carries:

- ``X-Certkeeper-Timestamp``: the send time, Unix seconds;
- ``X-Certkeeper-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the notifier's ``secret``,
  over ``<timestamp> + "." + <raw body bytes>``;
- ``X-Certkeeper-Event``: the event kind; ``X-Certkeeper-Delivery``: the ``id`` from the body,
  the same on every retry of one alert, so a receiver can drop duplicates.

A receiver verifies: recompute the HMAC over the timestamp header, a dot and the raw body as
received (before any JSON parsing), compare in constant time, and refuse timestamps more than
5 minutes from its clock (replay). The scheme follows Stripe's and Slack's request signing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any, Self

from pydantic import Field

from certkeeper.clock import Clock
from certkeeper.config import validate_options
from certkeeper.errors import CertkeeperError, NotifyError
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

SIGNATURE_HEADER = "X-Certkeeper-Signature"
TIMESTAMP_HEADER = "X-Certkeeper-Timestamp"
EVENT_HEADER = "X-Certkeeper-Event"
DELIVERY_HEADER = "X-Certkeeper-Delivery"


class WebhookOptions(HttpTargetOptions):
    #: a secret reference (secret:NAME, env:VAR, file:PATH); a literal URL works with a warning
    url: str
    #: the HMAC key, a secret reference too
    secret: str = Field(min_length=1)


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Certkeeper-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(key: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (without the replay window); used by the tests and as an example."""
    return hmac.compare_digest(sign(key, timestamp, body), signature)


def delivery_id(event: Event) -> str:
    """Stable across retries of the same alert (the outbox rebuilds the same event each time)."""
    canonical = json.dumps(render.to_json(event), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def body(event: Event) -> bytes:
    data: dict[str, Any] = {"id": delivery_id(event), "title": event.title, **render.to_json(event)}
    data["action"] = render.action(event)
    return json.dumps(data, separators=(",", ":")).encode()


class WebhookNotifier:
    """POSTs each event as signed JSON to a URL of the operator's choosing."""

    def __init__(self, name: str, sender: WebhookSender, secret: SecretValue, clock: Clock) -> None:
        self.name = name
        self.sender = sender
        self.secret = secret
        self.clock = clock

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        parsed: WebhookOptions = validate_options(WebhookOptions, options, where=where)
        url = secret_option(parsed.url, context, where=where, key="url")
        secret = secret_option(parsed.secret, context, where=where, key="secret")
        policy = UrlPolicy(parsed, f"the webhook for notifier {name!r}")
        check_literal_url(url, policy, f"{where}.url")
        return cls(name, WebhookSender(url, policy, context.clock), secret, context.clock)

    def notify(self, event: Event) -> None:
        try:
            key = self.secret.get().encode()
        except CertkeeperError as exc:
            raise NotifyError(f"the signing secret of notifier {self.name!r} cannot be read: {exc}") from None
        raw = body(event)
        timestamp = str(int(self.clock.now().timestamp()))
        self.sender.post(
            raw,
            headers={
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(key, timestamp, raw),
                EVENT_HEADER: event.kind.value,
                DELIVERY_HEADER: delivery_id(event),
            },
        )
        log.debug("sent %s to the webhook", event.kind.value, extra={"notifier": self.name})
