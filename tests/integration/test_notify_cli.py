"""``certkeeper notify test [NAME]`` in-process, against a real SMTP server and an HTTP stub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.core import free_port
from tests.fixtures.http import HttpStub
from tests.fixtures.mail import MailServer
from tests.integration.notifier_helpers import HOOK_SECRET, SLACK_CANARY


def write_config(home: Path, notifiers: dict[str, dict[str, Any]]) -> None:
    lines = []
    for name, table in notifiers.items():
        lines.append(f"[notifiers.{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
        lines.append("")
    (home / "certkeeper.toml").write_text("\n".join(lines))


@pytest.fixture
def configured(home: Path, http_stub: HttpStub, smtp_server: MailServer,
               monkeypatch: pytest.MonkeyPatch) -> HttpStub:
    closed = free_port()
    monkeypatch.setenv("CK_SLACK_URL", http_stub.url("/services/T0/B0/X") + f"?c={SLACK_CANARY}")
    monkeypatch.setenv("CK_INTERNAL_URL", http_stub.url("/internal"))
    monkeypatch.setenv("CK_CLOSED_URL", f"http://127.0.0.1:{closed}/hook?c={SLACK_CANARY}")
    monkeypatch.setenv("CK_HOOK_KEY", HOOK_SECRET)
    loopback = {"allow_http": True, "allow_networks": ["127.0.0.0/8"]}
    write_config(home, {
        "ops": {"type": "slack", "webhook_url": "env:CK_SLACK_URL", **loopback},
        "mail": {"type": "email", **smtp_server.options()},
        "internal": {"type": "webhook", "url": "env:CK_INTERNAL_URL", "secret": "env:CK_HOOK_KEY",
                     "allow_http": True},
        "closed": {"type": "webhook", "url": "env:CK_CLOSED_URL", "secret": "env:CK_HOOK_KEY", **loopback},
    })
    return http_stub


def test_notify_test_all(ck: Any, configured: HttpStub, smtp_server: MailServer) -> None:
    result = ck("notify", "test")
    assert result.code == 1, result
    assert "2 of 4 notifier(s) failed" in result.err
    lines = dict(line.split(": ", 1) for line in result.out.strip().splitlines())
    assert lines["ops (slack)"] == "ok"
    assert lines["mail (email)"] == "ok"
    assert lines["internal (webhook)"].startswith("failed: the webhook for notifier 'internal' resolves to a "
                                                  "loopback address; refused")
    assert lines["closed (webhook)"] == ("failed: could not reach the webhook for notifier 'closed' "
                                         "(connection failed or timed out)")
    # The refused target received nothing; the secrets and addresses are not printed.
    assert configured.received("/internal") == []
    assert len(configured.received("/services/T0/B0/X")) == 1
    assert SLACK_CANARY not in result.out + result.err
    assert str(configured.port) not in result.out + result.err
    [mail] = smtp_server.messages
    assert mail.message["Subject"] == "[certkeeper] test: certkeeper"
    assert "If you can read this" in json.dumps(str(mail.message))


def test_notify_test_one(ck: Any, configured: HttpStub, smtp_server: MailServer) -> None:
    result = ck("notify", "test", "ops")
    assert result.code == 0, result
    assert result.out.strip() == "ops (slack): ok"
    body = json.loads(configured.received()[0].body)
    assert body["blocks"][0]["text"]["text"] == "[certkeeper] test: certkeeper"
    assert smtp_server.messages == []


def test_notify_test_unknown_name(ck: Any, configured: HttpStub) -> None:
    result = ck("notify", "test", "nope")
    assert result.code == 1
    assert "no notifier named 'nope'" in result.err
    assert configured.received() == []


def test_notify_test_with_a_stored_secret(ck: Any, home: Path, http_stub: HttpStub) -> None:
    """The webhook URL lives in the store (encrypted), referenced as secret:NAME."""
    url_file = home / "url.txt"
    url_file.write_text(http_stub.url("/services/T0/B0/X") + f"?c={SLACK_CANARY}\n")
    write_config(home, {"ops": {"type": "slack", "webhook_url": "secret:slack-ops", "allow_http": True,
                                "allow_networks": ["127.0.0.0/8"]}})
    stored = ck("secret", "set", "slack-ops", "--from-file", str(url_file))
    assert stored.code == 0, stored
    url_file.unlink()
    result = ck("notify", "test")
    assert result.code == 0, result
    assert result.out.strip() == "ops (slack): ok"
    assert len(http_stub.received("/services/T0/B0/X")) == 1
    # Encrypted at rest: the canary is nowhere in the data folder.
    for path in (home / "data").rglob("*"):
        if path.is_file():
            assert SLACK_CANARY.encode() not in path.read_bytes(), path


def test_fixture_tables_work_from_the_config(ck: Any, home: Path, http_stub: HttpStub,
                                             smtp_server: MailServer) -> None:
    """The fixtures' notifier_table() helpers, as an end-to-end daemon test would use them."""
    write_config(home, {"slack": http_stub.notifier_table("slack", "/slack"),
                        "hook": http_stub.notifier_table("webhook", "/hook"),
                        "teams": http_stub.notifier_table("teams", "/teams"),
                        "mail": smtp_server.notifier_table()})
    result = ck("notify", "test")
    assert result.code == 0, result
    assert sorted(request.path for request in http_stub.received()) == ["/hook", "/slack", "/teams"]
    assert len(smtp_server.messages) == 1
