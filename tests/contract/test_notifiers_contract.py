"""The Notifier contract, run against every built-in notifier type in the registry.

- built with ``from_options`` from the registry; unknown or bad options raise ConfigError naming
  ``notifiers.NAME.key``;
- ``notify`` sends one message for one event;
- an unreachable endpoint raises NotifyError (retryable), never a foreign exception;
- nothing secret is in the exception text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.errors import ConfigError, NotifyError
from certkeeper.model import Event, EventKind
from certkeeper.notifiers import NOTIFIERS, Notifier, load_notifier
from tests.fixtures.core import free_port
from tests.fixtures.http import HttpStub
from tests.fixtures.mail import SMTP_PASSWORD, MailServer
from tests.integration.notifier_helpers import HOOK_SECRET, SLACK_CANARY, context

LOOPBACK = {"allow_http": True, "allow_networks": ["127.0.0.0/8"]}


def http_options(kind: str, url_ref: str) -> dict[str, Any]:
    if kind == "webhook":
        return {"url": url_ref, "secret": "secret:key", **LOOPBACK}
    return {"webhook_url": url_ref, **LOOPBACK}


Case = Callable[[HttpStub, MailServer], tuple[dict[str, Any], Callable[[], int]]]


def _http_case(kind: str) -> Case:
    def case(stub: HttpStub, _mail: MailServer) -> tuple[dict[str, Any], Callable[[], int]]:
        return http_options(kind, "secret:url"), lambda: len(stub.received())
    return case


def _email_case(_stub: HttpStub, mail: MailServer) -> tuple[dict[str, Any], Callable[[], int]]:
    return mail.options(), lambda: len(mail.messages)


def _apprise_case(stub: HttpStub, _mail: MailServer) -> tuple[dict[str, Any], Callable[[], int]]:
    # Apprise's json:// service POSTs the message as JSON: the stub receives it
    return {"urls": ["secret:url"]}, lambda: len(stub.received())


CASES: dict[str, Case] = {
    "email": _email_case,
    "slack": _http_case("slack"),
    "webhook": _http_case("webhook"),
    "teams": _http_case("teams"),
    "apprise": _apprise_case,
}


def test_every_registered_type_is_covered() -> None:
    assert set(CASES) == set(NOTIFIERS)


#: one of Apprise's service plugins imports imghdr (deprecated since Python 3.11); Apprise loads
#: every plugin on its first URL
APPRISE_IMPORTS = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@pytest.fixture(params=[pytest.param(kind, marks=APPRISE_IMPORTS) if kind == "apprise" else kind
                        for kind in sorted(NOTIFIERS)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(kind: str, options: dict[str, Any], clock: FrozenClock, tmp_path: Path, url: str) -> Notifier:
    if kind == "apprise":
        url = "json" + url.removeprefix("http")  # the same receiver, as an Apprise URL
    ctx = context(clock, tmp_path, {"url": url, "key": HOOK_SECRET})
    notifier = load_notifier(kind).from_options("contract", options, ctx)
    assert isinstance(notifier, Notifier)
    assert notifier.name == "contract"
    return notifier


def test_sends_one_message(kind: str, http_stub: HttpStub, smtp_server: MailServer, clock: FrozenClock,
                           tmp_path: Path) -> None:
    options, sent = CASES[kind](http_stub, smtp_server)
    notifier = build(kind, options, clock, tmp_path, http_stub.url("/c") + f"?c={SLACK_CANARY}")
    notifier.notify(Event(kind=EventKind.TEST, occurred_at=clock.now(), message="contract"))
    assert sent() == 1


def test_unknown_option_names_the_key(kind: str, http_stub: HttpStub, smtp_server: MailServer,
                                      clock: FrozenClock, tmp_path: Path) -> None:
    options, _sent = CASES[kind](http_stub, smtp_server)
    with pytest.raises(ConfigError, match=r"notifiers\.contract\.bogus"):
        build(kind, {**options, "bogus": 1}, clock, tmp_path, http_stub.url())


def test_unreachable_endpoint_is_a_retryable_notify_error(kind: str, http_stub: HttpStub,
                                                         smtp_server: MailServer, clock: FrozenClock,
                                                         tmp_path: Path) -> None:
    options, _sent = CASES[kind](http_stub, smtp_server)
    closed = free_port()
    if kind == "email":
        options = {**options, "port": closed}
    notifier = build(kind, options, clock, tmp_path, f"http://127.0.0.1:{closed}/c?c={SLACK_CANARY}")
    with pytest.raises(NotifyError) as failure:
        notifier.notify(Event(kind=EventKind.TEST, occurred_at=clock.now(), message="contract"))
    assert failure.value.retryable is True
    text = str(failure.value)
    assert "could not reach" in text
    assert SLACK_CANARY not in text and SMTP_PASSWORD not in text and HOOK_SECRET not in text


def test_webhook_signed_as_standard_webhooks_meets_the_contract(http_stub: HttpStub, clock: FrozenClock,
                                                                tmp_path: Path) -> None:
    """The generic webhook's Standard Webhooks option: one message, unreachable is retryable, no secret."""
    import base64

    secret = "whsec_" + base64.b64encode(HOOK_SECRET.encode() * 2).decode()
    options = {"url": "secret:url", "secret": "secret:key", "signature": "standard-webhooks", **LOOPBACK}
    for url, reachable in ((http_stub.url("/c") + f"?c={SLACK_CANARY}", True),
                           (f"http://127.0.0.1:{free_port()}/c?c={SLACK_CANARY}", False)):
        ctx = context(clock, tmp_path, {"url": url, "key": secret})
        notifier = load_notifier("webhook").from_options("contract", options, ctx)
        event = Event(kind=EventKind.TEST, occurred_at=clock.now(), message="contract")
        if reachable:
            notifier.notify(event)
            assert len(http_stub.received()) == 1
            assert "webhook-signature" in {key.lower() for key in http_stub.received()[0].headers}
        else:
            with pytest.raises(NotifyError) as failure:
                notifier.notify(event)
            assert failure.value.retryable is True and "could not reach" in str(failure.value)
            assert secret not in str(failure.value) and SLACK_CANARY not in str(failure.value)
