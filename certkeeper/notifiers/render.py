"""Words for an Event, shared by every notifier so email, Slack and Teams say the same thing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certkeeper.clock import utc
from certkeeper.lifecycle.alerts import next_step
from certkeeper.model import Event, EventKind


def action(event: Event) -> str:
    return event.action or next_step(event.kind)


def kind_label(event: Event) -> str:
    return event.kind.value.replace("_", " ")


def days_left_text(days: float | None) -> str:
    if days is None:
        return "-"
    if days < 0:
        return f"expired {abs(days):.1f} days ago"
    if days < 2:
        return f"{days * 24:.0f} hours"
    return f"{days:.1f} days"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def facts(event: Event) -> list[tuple[str, str]]:
    """(label, value) pairs in display order; details follow the fixed fields."""
    rows = [("Certificate", event.certificate_id or "-"), ("Event", kind_label(event))]
    # Digest and test events have no certificate facts: leave the empty rows out.
    if event.days_left is not None:
        rows.append(("Days left", days_left_text(event.days_left)))
    if event.names:
        rows.append(("Names", ", ".join(event.names)))
    if event.not_after is not None:
        rows.append(("Not after", when(event.not_after)))
    rows.extend((str(key).replace("_", " ").capitalize(), str(value)) for key, value in event.details.items())
    return rows


def plain_text(event: Event) -> str:
    """The whole alert as plain text (the email text part, the Slack fallback)."""
    lines = [event.title, "", event.message, ""]
    width = max(len(label) for label, _ in facts(event))
    lines.extend(f"{label + ':':<{width + 1}} {value}" for label, value in facts(event))
    next_step = action(event)
    if next_step:
        lines.extend(["", f"What to do next: {next_step}"])
    lines.extend(["", f"-- certkeeper, {when(event.occurred_at)}"])
    return "\n".join(lines)


def to_json(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data (the outbox payload, the webhook body). Events hold no secrets."""
    return {
        "kind": event.kind.value,
        "occurred_at": event.occurred_at.isoformat(),
        "message": event.message,
        "certificate_id": event.certificate_id,
        "names": list(event.names),
        "not_after": event.not_after.isoformat() if event.not_after is not None else None,
        "days_left": event.days_left,
        "action": event.action,
        "details": {str(key): str(value) for key, value in event.details.items()},
    }


def from_json(data: Mapping[str, Any]) -> Event:
    """The inverse of :func:`to_json`; raises ValueError/KeyError/TypeError on a malformed payload."""
    not_after = data.get("not_after")
    days_left = data.get("days_left")
    return Event(
        kind=EventKind(data["kind"]),
        occurred_at=utc(datetime.fromisoformat(data["occurred_at"])),
        message=str(data.get("message", "")),
        certificate_id=data.get("certificate_id"),
        names=tuple(str(name) for name in data.get("names", ())),
        not_after=utc(datetime.fromisoformat(not_after)) if not_after else None,
        days_left=float(days_left) if days_left is not None else None,
        action=str(data.get("action", "")),
        details={str(key): str(value) for key, value in dict(data.get("details", {})).items()},
    )
