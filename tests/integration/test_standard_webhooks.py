"""The generic webhook signed in the Standard Webhooks format, verified by the spec's own library."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from certkeeper.clock import FrozenClock
from certkeeper.errors import NotifyError
from certkeeper.notifiers.webhook import WebhookNotifier, delivery_id, standard_webhooks_headers
from tests.fixtures.http import HttpStub
from tests.integration.notifier_helpers import context, expiring_event

LOOPBACK = {"allow_http": True, "allow_networks": ["127.0.0.0/8"]}
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def notifier(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path, secret: str) -> WebhookNotifier:
    return WebhookNotifier.from_options(
        "hooks", {"url": "secret:url", "secret": "secret:key", "signature": "standard-webhooks", **LOOPBACK},
        context(clock, tmp_path, {"url": http_stub.url("/sw"), "key": secret}))


def test_standard_webhooks_signature_verifies_with_the_reference_library(
        http_stub: HttpStub, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))  # the library checks a 5-minute window
    event = expiring_event(clock)
    notifier(http_stub, clock, tmp_path, SECRET).notify(event)
    notifier(http_stub, clock, tmp_path, SECRET).notify(event)  # a retry of the same alert
    first, again = http_stub.received("/sw")
    headers = {key.lower(): value for key, value in first.headers.items()}
    assert headers["webhook-id"] == delivery_id(event) == {k.lower(): v for k, v in again.headers.items()}["webhook-id"]
    assert headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    payload = Webhook(SECRET).verify(first.body, headers)
    assert payload["certificate_id"] == "mail" and payload["kind"] == "expiring"
    assert "x-certkeeper-signature" not in headers
    # a changed body, or another key, does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(first.body.replace(b"mail", b"mall"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode()).verify(first.body, headers)


def test_the_signature_is_the_spec_scheme() -> None:
    """Independent of the library: v1, base64 HMAC-SHA256 over "id.timestamp.body" (the spec's text)."""
    import hashlib
    import hmac

    key = os.urandom(24)
    headers = standard_webhooks_headers("whsec_" + base64.b64encode(key).decode(), "msg_1", 1700000000, b'{"a":1}')
    expected = base64.b64encode(hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()).decode()
    assert headers == {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": f"v1,{expected}"}


def test_a_secret_that_is_not_whsec_base64_is_a_permanent_error_without_the_secret(
        http_stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> None:
    bad = "whsec_not*base64!canary"
    with pytest.raises(NotifyError) as caught:
        notifier(http_stub, clock, tmp_path, bad).notify(expiring_event(clock))
    assert caught.value.retryable is False
    assert "not a Standard Webhooks secret" in str(caught.value) and "canary" not in str(caught.value)
    assert http_stub.received("/sw") == []
