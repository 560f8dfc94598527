"""The apprise notifier against a loopback receiver through Apprise's json:// service."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.errors import NotifyError
from certkeeper.model import Event, EventKind
from certkeeper.notifiers.apprise_notifier import AppriseNotifier
from tests.fixtures.http import HttpStub, Reply
from tests.integration.notifier_helpers import context, expiring_event

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

TOKEN = "tok3n-canary-81c0a2"


def notifier(clock: FrozenClock, tmp_path: Path, *urls: str) -> AppriseNotifier:
    secrets = {f"u{index}": url for index, url in enumerate(urls)}
    return AppriseNotifier.from_options("oncall", {"urls": [f"secret:u{index}" for index in range(len(urls))]},
                                        context(clock, tmp_path, secrets))


def test_sends_title_body_and_type(http_stub: HttpStub, clock: FrozenClock, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = "json" + http_stub.url(f"/{TOKEN}").removeprefix("http")
    notifier(clock, tmp_path, url).notify(expiring_event(clock))
    [request] = http_stub.received(f"/{TOKEN}")
    body = json.loads(request.body)
    assert body["title"].startswith("[certkeeper] expiring: mail") and body["type"] == "warning"
    assert "autodiscover.contoso.com" in body["message"]
    assert TOKEN not in caplog.text


def test_a_refusing_service_is_a_retryable_error_without_the_url(http_stub: HttpStub, clock: FrozenClock,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    http_stub.script(f"/{TOKEN}", Reply(500))
    good = "json" + http_stub.url("/fine").removeprefix("http")
    bad = "json" + http_stub.url(f"/{TOKEN}").removeprefix("http")
    with pytest.raises(NotifyError) as caught:
        notifier(clock, tmp_path, good, bad).notify(Event(kind=EventKind.TEST, occurred_at=clock.now(), message="x"))
    assert caught.value.retryable is True
    assert str(caught.value) == ("Apprise could not reach or was refused by 1 of 2 service(s) of notifier 'oncall'; "
                                 "retrying later")
    assert len(http_stub.received("/fine")) == 1
    assert TOKEN not in caplog.text and TOKEN not in str(caught.value)


def test_an_url_apprise_does_not_know_is_permanent(clock: FrozenClock, tmp_path: Path) -> None:
    with pytest.raises(NotifyError) as caught:
        notifier(clock, tmp_path, f"nosuchservice://{TOKEN}").notify(
            Event(kind=EventKind.TEST, occurred_at=clock.now(), message="x"))
    assert caught.value.retryable is False and TOKEN not in str(caught.value)
