"""The persistent alert queue against a real SQLite store, a real SMTP server and an HTTP stub.

Time is a FrozenClock and ``now`` is passed in: backoff is checked in stored timestamps, never
slept. Only Slack's 1 message/second pacing uses the real clock (and is measured at the stub).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from certkeeper.clock import FrozenClock
from certkeeper.errors import NotifyError
from certkeeper.model import Event, EventKind
from certkeeper.notifiers import Notifier
from certkeeper.notifiers.email import EmailNotifier
from certkeeper.notifiers.slack import SlackNotifier
from certkeeper.outbox import BACKOFF_CAP, Outbox, backoff
from certkeeper.sealing import Sealer, generate_key
from certkeeper.store import db
from certkeeper.store.alerts import Alert
from certkeeper.store.tables import outbox
from certkeeper.store.unit import Store
from tests.fixtures.http import HttpStub, Reply
from tests.fixtures.mail import SMTP_PASSWORD, MailServer
from tests.integration.notifier_helpers import SLACK_CANARY, context, expiring_event

SLACK_PATH = "/services/T000/B000/XXX"


def make_outbox(engine: Engine, clock: FrozenClock, **options: Any) -> Outbox:
    return Outbox(Store(engine, Sealer([generate_key()]), clock), **options)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """The same outbox tests on SQLite (a file) and on PostgreSQL (a fresh schema)."""
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    db.upgrade(engine)
    yield engine, engine
    engine.dispose()


def rows(engine: Engine) -> list[Alert]:
    with engine.connect() as connection:
        return [Alert(**row._mapping) for row in connection.execute(select(outbox).order_by(outbox.c.id))]


def renewed_event(clock: FrozenClock) -> Event:
    return Event(kind=EventKind.RENEWED, occurred_at=clock.now(), message="Certificate mail renewed.",
                 certificate_id="mail", names=("mail.contoso.com",), days_left=89.9)


def slack_notifier(stub: HttpStub, clock: FrozenClock, tmp_path: Path) -> SlackNotifier:
    url = stub.url(SLACK_PATH) + f"?canary={SLACK_CANARY}"
    return SlackNotifier.from_options(
        "ops", {"webhook_url": "secret:slack-ops", "allow_http": True, "allow_networks": ["127.0.0.0/8"]},
        context(clock, tmp_path, {"slack-ops": url}),
    )


class Recording:
    """A notifier that records events and fails as told."""

    def __init__(self, name: str, failures: list[BaseException] | None = None) -> None:
        self.name = name
        self.failures = list(failures or [])
        self.events: list[Event] = []

    @classmethod
    def from_options(cls, name: str, options: object, context: object) -> Recording:
        return cls(name)

    def notify(self, event: Event) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.events.append(event)


def test_backoff_schedule() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert backoff(40) == BACKOFF_CAP


def test_enqueue_dedupes_per_notifier_and_key(store: tuple[Engine, Engine],
                                              clock: FrozenClock) -> None:
    _engine, factory = store
    outbox = make_outbox(factory, clock)
    event = expiring_event(clock)
    assert outbox.enqueue(event, ["mail", "ops", "mail"], "expiring:mail:r1:7d") == 2
    assert outbox.enqueue(event, ["mail", "ops"], "expiring:mail:r1:7d") == 0  # next reconcile pass
    assert outbox.enqueue(event, ["ops", "teams"], "expiring:mail:r1:7d") == 1  # a newly added notifier
    assert outbox.enqueue(expiring_event(clock, days_left=2.5), ["mail"], "expiring:mail:r1:3d") == 1
    stored = rows(factory)
    assert [(row.notifier, row.dedupe_key) for row in stored] == [
        ("mail", "expiring:mail:r1:7d"), ("ops", "expiring:mail:r1:7d"),
        ("teams", "expiring:mail:r1:7d"), ("mail", "expiring:mail:r1:3d"),
    ]
    assert stored[0].payload["kind"] == "expiring" and stored[0].payload["names"] == [
        "mail.contoso.com", "autodiscover.contoso.com"]
    # Delivered rows still dedupe: the same threshold never alerts twice.
    recording = Recording("mail")
    outbox.deliver_due({"mail": recording, "ops": Recording("ops"), "teams": Recording("teams")}, clock.now())
    assert outbox.enqueue(event, ["mail"], "expiring:mail:r1:7d") == 0
    assert len(recording.events) == 2


def test_outage_smtp_421_554_slack_429_500_every_alert_delivered_once(
    store: tuple[Engine, Engine], clock: FrozenClock, tmp_path: Path,
    smtp_server: MailServer, http_stub: HttpStub, caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's must-show: SMTP refusing (421, then 554) and Slack answering 429 then 500;
    every alert is delivered exactly once after the endpoints recover."""
    caplog.set_level(logging.DEBUG)
    _engine, factory = store
    outbox = make_outbox(factory, clock)
    notifiers: dict[str, Notifier] = {
        "mail": EmailNotifier.from_options("mail", smtp_server.options(), context(clock, tmp_path)),
        "ops": slack_notifier(http_stub, clock, tmp_path),
    }
    smtp_server.script("421 4.3.2 Service not available", "554 5.3.0 Transaction failed")
    http_stub.script(SLACK_PATH, Reply(429, {"Retry-After": "120"}, b"rate_limited"), Reply(500))
    outbox.enqueue(expiring_event(clock), ["mail", "ops"], "expiring:mail:r1:7d")
    outbox.enqueue(renewed_event(clock), ["mail", "ops"], "renewed:mail:r2")

    start = clock.now()
    first = outbox.deliver_due(notifiers, start)
    assert len(first.retrying) == 2 and first.delivered == []
    assert len(first.deferred) == 2  # each endpoint failed once: its second alert waits
    by_notifier = {row.notifier: row for row in rows(factory) if row.attempts}
    assert by_notifier["mail"].next_attempt_at == start + timedelta(seconds=30)
    assert "421" in (by_notifier["mail"].last_error or "")
    # Retry-After (120 s) beats the 30 s backoff.
    assert by_notifier["ops"].next_attempt_at >= start + timedelta(seconds=120)
    assert "429" in (by_notifier["ops"].last_error or "")

    # 29 s later only the two alerts deferred by the first run go out (and fail: 554 and 500);
    # the first two are not due yet.
    clock.advance(timedelta(seconds=29))
    second = outbox.deliver_due(notifiers, clock.now())
    assert sorted(second.retrying) == sorted(first.deferred)
    assert "554" in " ".join(row.last_error or "" for row in rows(factory))

    for _ in range(20):  # follow the stored schedule, jumping the frozen clock to the next due row
        pending = [row for row in rows(factory) if row.delivered_at is None and not row.dead]
        if not pending:
            break
        clock.set(max(clock.now(), min(row.next_attempt_at for row in pending)))
        outbox.deliver_due(notifiers, clock.now())

    final = rows(factory)
    assert all(row.delivered_at is not None and not row.dead for row in final)
    # Exactly once: two messages by mail, two 200s at the Slack stub, one per event.
    assert len(smtp_server.messages) == 2
    assert sorted(str(mail.message["Subject"]) for mail in smtp_server.messages) == [
        "[certkeeper] expiring: mail", "[certkeeper] renewed: mail"]
    slack_requests = http_stub.received(SLACK_PATH)
    assert [request.status for request in slack_requests] == [429, 500, 200, 200]
    ok_bodies = [request.body for request in slack_requests if request.status == 200]
    assert len(set(ok_bodies)) == 2
    # The 429 was honoured: that alert was not tried again before Retry-After (120 s) had passed.
    [limited] = [row for row in final if row.notifier == "ops" and row.kind == "expiring"]
    assert limited.attempts == 2
    assert limited.delivered_at is not None and limited.delivered_at >= start + timedelta(seconds=120)
    expiring_posts = [request.status for request in slack_requests if b"expiring" in request.body]
    assert expiring_posts == [429, 200]
    # Slack's ~1 message/s: the two successful posts came at least ~1 s apart (real time).
    ok_times = [request.at for request in slack_requests if request.status == 200]
    assert ok_times[1] - ok_times[0] >= 0.95
    # No secret in the log, nor in the store (row 33 of the reliability matrix).
    assert SLACK_CANARY not in caplog.text and SMTP_PASSWORD not in caplog.text
    stored = " ".join(f"{row.payload} {row.last_error}" for row in rows(factory))
    assert SLACK_CANARY not in stored and SMTP_PASSWORD not in stored
    if _engine.url.get_backend_name() == "sqlite":
        database = Path(str(_engine.url.database)).read_bytes()
        assert SLACK_CANARY.encode() not in database and SMTP_PASSWORD.encode() not in database


def test_survives_restart(store: tuple[Engine, Engine], clock: FrozenClock,
                          tmp_path: Path, http_stub: HttpStub) -> None:
    engine, factory = store
    http_stub.script(SLACK_PATH, Reply(500))
    first = make_outbox(factory, clock)
    first.enqueue(expiring_event(clock), ["ops"], "expiring:mail:r1:7d")
    first.deliver_due({"ops": slack_notifier(http_stub, clock, tmp_path)}, clock.now())
    engine.dispose()  # "the daemon stops"

    restarted_engine = db.make_engine(engine.url.render_as_string(hide_password=False))
    try:
        second = make_outbox(restarted_engine, clock)
        notifiers: dict[str, Notifier] = {"ops": slack_notifier(http_stub, clock, tmp_path)}
        [waiting] = second.pending()
        assert waiting.attempts == 1 and not waiting.dead and "HTTP 500" in (waiting.last_error or "")
        # The stored backoff holds across the restart ...
        assert second.deliver_due(notifiers, clock.now() + timedelta(seconds=10)).attempted == 0
        # ... and the alert goes out once it is due.
        report = second.deliver_due(notifiers, clock.now() + timedelta(seconds=30))
        assert len(report.delivered) == 1
        assert second.pending() == []
        assert second.counts() == {"pending": 0, "dead": 0, "delivered": 1}
        assert [request.status for request in http_stub.received()] == [500, 200]
    finally:
        restarted_engine.dispose()


def test_a_notifier_bug_never_escapes(store: tuple[Engine, Engine], clock: FrozenClock,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _engine, factory = store
    outbox = make_outbox(factory, clock)
    broken = Recording("broken", [RuntimeError(f"boom {SLACK_CANARY}"), KeyError("x")])
    healthy = Recording("healthy")
    outbox.enqueue(expiring_event(clock), ["broken", "healthy"], "k1")

    report = outbox.deliver_due({"broken": broken, "healthy": healthy}, clock.now())  # must not raise
    assert len(report.retrying) == 1 and len(report.delivered) == 1
    [row] = [row for row in rows(factory) if row.notifier == "broken"]
    assert row.last_error == "unexpected RuntimeError in the notifier"
    assert "raised RuntimeError (a bug)" in caplog.text
    assert "in notify" in caplog.text  # where it happened is logged at DEBUG ...
    assert SLACK_CANARY not in caplog.text  # ... but not what the exception said
    outbox.deliver_due({"broken": broken, "healthy": healthy}, clock.now() + timedelta(seconds=30))
    outbox.deliver_due({"broken": broken, "healthy": healthy}, clock.now() + timedelta(seconds=120))
    assert len(broken.events) == 1 and len(healthy.events) == 1


def test_permanent_error_is_dead_and_listed(store: tuple[Engine, Engine], clock: FrozenClock,
                                            tmp_path: Path, http_stub: HttpStub) -> None:
    _engine, factory = store
    outbox = make_outbox(factory, clock)
    http_stub.script(SLACK_PATH, Reply(404, body=b"no_service"))
    outbox.enqueue(expiring_event(clock), ["ops"], "k1")
    notifiers: dict[str, Notifier] = {"ops": slack_notifier(http_stub, clock, tmp_path)}
    report = outbox.deliver_due(notifiers, clock.now())
    assert len(report.dead) == 1
    [alert] = outbox.pending()
    assert alert.dead and alert.attempts == 1 and "HTTP 404" in (alert.last_error or "")
    assert "no_service" in (alert.last_error or "")
    assert outbox.pending(include_dead=False) == []
    assert outbox.deliver_due(notifiers, clock.now() + timedelta(days=1)).attempted == 0
    assert len(http_stub.received()) == 1


def test_gives_up_after_max_attempts_and_max_age(store: tuple[Engine, Engine],
                                                 clock: FrozenClock) -> None:
    _engine, factory = store
    outbox = make_outbox(factory, clock, max_attempts=3)
    flaky = Recording("flaky", [NotifyError("down")] * 10)
    outbox.enqueue(expiring_event(clock), ["flaky"], "k1")
    for _ in range(3):
        due = min(row.next_attempt_at for row in rows(factory))
        outbox.deliver_due({"flaky": flaky}, due)
    [row] = rows(factory)
    assert row.dead and row.attempts == 3 and row.last_error == "down"

    aged = make_outbox(factory, clock, max_age=timedelta(hours=48))
    aged.enqueue(expiring_event(clock), ["flaky"], "k2")
    aged.deliver_due({"flaky": flaky}, clock.now())
    [second] = [row for row in rows(factory) if row.dedupe_key == "k2"]
    assert not second.dead
    aged.deliver_due({"flaky": flaky}, clock.now() + timedelta(hours=48))
    [second] = [row for row in rows(factory) if row.dedupe_key == "k2"]
    assert second.dead and second.attempts == 2


def test_unknown_notifier_waits_then_dies_of_age(store: tuple[Engine, Engine],
                                                 clock: FrozenClock) -> None:
    _engine, factory = store
    outbox = make_outbox(factory, clock)
    outbox.enqueue(expiring_event(clock), ["removed"], "k1")
    report = outbox.deliver_due({}, clock.now())
    assert len(report.unknown_notifier) == 1 and not rows(factory)[0].dead
    outbox.deliver_due({}, clock.now() + timedelta(hours=49))
    [row] = rows(factory)
    assert row.dead and "not configured" in (row.last_error or "")


def test_a_claimed_alert_is_not_sent_by_a_second_daemon(store: tuple[Engine, Engine],
                                                        clock: FrozenClock) -> None:
    """Two daemons on one store: while one is sending an alert, the other skips it."""
    _engine, factory = store
    first, second = make_outbox(factory, clock), make_outbox(factory, clock)
    inner_reports = []

    class Reentrant(Recording):
        def notify(self, event: Event) -> None:
            inner_reports.append(second.deliver_due({"ops": plain}, clock.now()))
            super().notify(event)

    plain = Recording("ops")
    first.enqueue(expiring_event(clock), ["ops"], "k1")
    first.deliver_due({"ops": Reentrant("ops")}, clock.now())
    assert inner_reports[0].attempted == 0 and plain.events == []
    assert rows(factory)[0].delivered_at is not None


def test_slack_pacing_uses_min_interval(store: tuple[Engine, Engine],
                                        clock: FrozenClock) -> None:
    _engine, factory = store
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    class Paced(Recording):
        min_interval = 1.0

    outbox = make_outbox(factory, clock, sleep=sleep, monotonic=lambda: now[0])
    for index in range(3):
        outbox.enqueue(expiring_event(clock, certificate_id=f"c{index}"), ["ops", "mail"], f"k{index}")
    paced, unpaced = Paced("ops"), Recording("mail")
    report = outbox.deliver_due({"ops": paced, "mail": unpaced}, clock.now())
    assert len(report.delivered) == 6
    assert slept == [1.0, 1.0]  # only between Slack posts
