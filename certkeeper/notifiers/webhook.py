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

With ``signature = "standard-webhooks"`` the request is signed as the Standard Webhooks
specification says (https://www.standardwebhooks.com/), with its reference library
``standardwebhooks``, so any receiver that verifies those (Svix and the libraries listed there)
accepts it: ``webhook-id`` (the delivery id, the same on every retry), ``webhook-timestamp``
(Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, keyed
with the base64 secret after its ``whsec_`` prefix. The secret is a secret reference too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal, Self

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
    #: the HMAC key, a secret reference too ("whsec_<base64>" for standard-webhooks)
    secret: str = Field(min_length=1)
    #: ``certkeeper``: X-Certkeeper-Signature (sha256=hex over "timestamp.body");
    #: ``standard-webhooks``: webhook-id, webhook-timestamp, webhook-signature (v1,base64)
    signature: Literal["certkeeper", "standard-webhooks"] = "certkeeper"


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Certkeeper-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(key: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (without the replay window); used by the tests and as an example."""
    return hmac.compare_digest(sign(key, timestamp, body), signature)


def standard_webhooks_headers(secret: str, message_id: str, timestamp: int, raw: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``raw`` sent at ``timestamp`` (Unix seconds).

    Raises ValueError (never quoting the secret) when ``secret`` is not ``whsec_`` + base64.
    """
    import base64
    import binascii
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    encoded = secret.strip().removeprefix("whsec_")
    try:
        # strict: the library's own decoding skips characters that are not base64
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)") from None
    if not 24 <= len(key) <= 64:  # the specification: secrets are 24 to 64 random bytes
        raise ValueError("not a Standard Webhooks secret (the key must be 24 to 64 bytes)")
    try:
        signer = Webhook(key)
    except (binascii.Error, ValueError, RuntimeError):
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)") from None
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signer.sign(message_id, when, raw.decode("utf-8"))}


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

    def __init__(self, name: str, sender: WebhookSender, secret: SecretValue, clock: Clock,
                 signature: str = "certkeeper") -> None:
        self.name = name
        self.sender = sender
        self.secret = secret
        self.clock = clock
        self.signature = signature

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        parsed: WebhookOptions = validate_options(WebhookOptions, options, where=where)
        url = secret_option(parsed.url, context, where=where, key="url")
        secret = secret_option(parsed.secret, context, where=where, key="secret")
        policy = UrlPolicy(parsed, f"the webhook for notifier {name!r}")
        check_literal_url(url, policy, f"{where}.url")
        return cls(name, WebhookSender(url, policy, context.clock), secret, context.clock, parsed.signature)

    def notify(self, event: Event) -> None:
        try:
            key = self.secret.get()
        except CertkeeperError as exc:
            raise NotifyError(f"the signing secret of notifier {self.name!r} cannot be read: {exc}") from None
        raw = body(event)
        now = int(self.clock.now().timestamp())
        delivery = delivery_id(event)
        headers = {EVENT_HEADER: event.kind.value, DELIVERY_HEADER: delivery}
        if self.signature == "standard-webhooks":
            try:
                headers.update(standard_webhooks_headers(key, delivery, now, raw))
            except ValueError as exc:
                raise NotifyError(f"the signing secret of notifier {self.name!r} is {exc}", retryable=False) from None
        else:
            timestamp = str(now)
            headers.update({TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(key.encode(), timestamp, raw)})
        self.sender.post(raw, headers=headers)
        log.debug("sent %s to the webhook", event.kind.value, extra={"notifier": self.name})
