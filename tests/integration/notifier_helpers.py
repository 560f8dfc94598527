"""Helpers shared by the notifier and outbox tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from certkeeper.clock import Clock
from certkeeper.errors import ConfigError
from certkeeper.model import Event, EventKind
from certkeeper.plugins import MemoryState, PluginContext

SLACK_CANARY = "canary-slack-T000-B000-4b1d"
HOOK_SECRET = "canary-hmac-key-93a1"


def context(clock: Clock, tmp_path: Path, secrets: Mapping[str, str] | None = None) -> PluginContext:
    """A plugin context whose resolver reads env:, file: and secret: (from ``secrets``)."""
    named = dict(secrets or {})

    def resolve(reference: str) -> str:
        scheme, _, rest = reference.partition(":")
        if scheme == "env":
            if rest not in os.environ:
                raise ConfigError(f"environment variable {rest} is not set")
            return os.environ[rest]
        if scheme == "file":
            return Path(rest).read_text().strip()
        if scheme == "secret":
            if rest not in named:
                raise ConfigError(f"no secret named {rest!r}")
            return named[rest]
        return reference

    return PluginContext(clock=clock, state=MemoryState(), data_dir=tmp_path, resolve_secret=resolve)


def expiring_event(clock: Clock, certificate_id: str = "mail", days_left: float = 6.5) -> Event:
    return Event(
        kind=EventKind.EXPIRING,
        occurred_at=clock.now(),
        message=f"Certificate {certificate_id} expires in {days_left} days & has not been renewed <yet>.",
        certificate_id=certificate_id,
        names=("mail.contoso.com", "autodiscover.contoso.com"),
        not_after=datetime(2026, 12, 7, 0, 0, tzinfo=UTC),
        days_left=days_left,
        details={"threshold": "7d", "problem": "urn:ietf:params:acme:error:rateLimited"},
    )
