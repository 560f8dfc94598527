"""Alerts through the service: queued by Service.alert, delivered by Service.deliver_alerts with
notifiers built from [notifiers.NAME] tables, the Slack URL stored encrypted as secret:NAME."""

from __future__ import annotations

from pathlib import Path

from certkeeper import config as config_module
from certkeeper.clock import FrozenClock
from certkeeper.model import Event, EventKind
from certkeeper.service import Service
from certkeeper.store import secrets
from tests.fixtures.http import HttpStub, Reply
from tests.fixtures.mail import SMTP_PASSWORD, MailServer
from tests.integration.notifier_helpers import SLACK_CANARY, expiring_event

SLACK_PATH = "/services/T0/B0/X"


def test_service_outage_then_recovery_delivers_each_alert_once(
    home: Path, clock: FrozenClock, smtp_server: MailServer, http_stub: HttpStub
) -> None:
    settings = config_module.parse(
        {
            "notifiers": {
                "ops": {"type": "slack", "webhook_url": "secret:slack-ops", "allow_http": True,
                        "allow_networks": ["127.0.0.0/8"]},
                "mail": {"type": "email", **smtp_server.options()},
            }
        },
        data_dir=home / "data",
    )
    service = Service.open(settings, clock=clock)
    with service.store.session() as session:
        secrets.put(session, service.store.sealer, "slack-ops", http_stub.url(SLACK_PATH) + f"?c={SLACK_CANARY}",
                    clock.now())
    smtp_server.script("421 4.3.2 Service not available", "554 5.3.0 Transaction failed")
    http_stub.script(SLACK_PATH, Reply(429, {"Retry-After": "90"}), Reply(500))

    assert service.alerting.queue(expiring_event(clock), "expiring:mail:1:7d") == 2
    renewed = Event(kind=EventKind.RENEWED, occurred_at=clock.now(), message="renewed", certificate_id="mail")
    assert service.alerting.queue(renewed, "renewed:mail:2") == 2
    assert service.alerting.queue(renewed, "renewed:mail:2") == 0  # the next reconcile pass: deduplicated

    outbox = service.alerting.outbox()
    for _ in range(20):
        waiting = outbox.pending(include_dead=False)
        if not waiting:
            break
        clock.set(max(clock.now(), min(alert.next_attempt_at for alert in waiting)))
        service.alerting.deliver(clock.now())
    assert outbox.pending() == []
    assert outbox.counts() == {"pending": 0, "dead": 0, "delivered": 4}
    assert len(smtp_server.messages) == 2
    assert [request.status for request in http_stub.received(SLACK_PATH)] == [429, 500, 200, 200]
    for path in (home / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SLACK_CANARY.encode() not in data and SMTP_PASSWORD.encode() not in data, path
