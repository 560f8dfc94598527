"""The alert outbox's rows: one per (notifier, dedupe key), delivered, waiting or dead.

The delivery policy (dedupe, retry, backoff, pacing) is :mod:`certkeeper.outbox`'s. Every function
takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, and_, delete, func, insert, select, update

from certkeeper.store.tables import outbox as outbox_table

A = outbox_table.c


@dataclass(frozen=True)
class Alert:
    """One row of the ``outbox`` table."""

    id: int
    notifier: str
    dedupe_key: str
    kind: str
    certificate_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    dead: bool
    last_error: str | None


def exists(session: Connection, notifier: str, dedupe_key: str) -> bool:
    """Whether this alert was ever queued for ``notifier`` (delivered, waiting or dead)."""
    return session.scalar(
        select(A.id).where(A.notifier == notifier, A.dedupe_key == dedupe_key)
    ) is not None


def add(
    session: Connection, *, notifier: str, dedupe_key: str, kind: str, certificate_id: str | None,
    payload: dict[str, Any], now: datetime,
) -> None:
    """Queue one alert, due now; StoreConflict if another process queued it first."""
    session.execute(insert(outbox_table).values(
        notifier=notifier, dedupe_key=dedupe_key, kind=kind, certificate_id=certificate_id, payload=payload,
        created_at=now, attempts=0, next_attempt_at=now, dead=False,
    ))


def _waiting(now: datetime) -> tuple[object, ...]:
    return (A.delivered_at.is_(None), A.dead.is_(False), A.next_attempt_at <= now)


def due(session: Connection, now: datetime, notifiers: Sequence[str], limit: int) -> list[tuple[int, str, datetime]]:
    """(id, notifier, next_attempt_at) of waiting alerts due now for the configured notifiers."""
    rows = session.execute(
        select(A.id, A.notifier, A.next_attempt_at)
        .where(*_waiting(now), A.notifier.in_(list(notifiers)))  # type: ignore[arg-type]
        .order_by(A.next_attempt_at, A.id)
        .limit(limit)
    )
    return [(row_id, notifier, at) for row_id, notifier, at in rows]


def orphans(session: Connection, now: datetime, notifiers: Sequence[str]) -> list[tuple[int, str, datetime]]:
    """(id, notifier, created_at) of waiting alerts whose notifier is not configured."""
    rows = session.execute(
        select(A.id, A.notifier, A.created_at)
        .where(*_waiting(now), A.notifier.not_in(list(notifiers)))  # type: ignore[arg-type]
        .order_by(A.id)
    )
    return [(row_id, notifier, at) for row_id, notifier, at in rows]


def claim(session: Connection, row_id: int, seen_next_attempt_at: datetime, until: datetime) -> bool:
    """Take a due alert for sending (compare-and-set on its due time), so two daemons sharing a
    store never both send it; it is due again at ``until`` if this process dies mid-send."""
    result = session.execute(
        update(outbox_table)
        .where(
            and_(
                A.id == row_id, A.delivered_at.is_(None), A.dead.is_(False),
                A.next_attempt_at == seen_next_attempt_at,
            )
        )
        .values(next_attempt_at=until)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def get(session: Connection, row_id: int) -> Alert | None:
    row = session.execute(select(outbox_table).where(A.id == row_id)).first()
    return None if row is None else Alert(**row._mapping)


def set_fields(session: Connection, row_id: int, **values: Any) -> None:
    """Change columns of one alert (its delivery, attempts, next attempt, last error)."""
    session.execute(update(outbox_table).where(A.id == row_id).values(**values))


def undelivered(session: Connection, *, include_dead: bool, certificate_id: str | None) -> list[Alert]:
    query = select(outbox_table).where(A.delivered_at.is_(None))
    if not include_dead:
        query = query.where(A.dead.is_(False))
    if certificate_id is not None:
        query = query.where(A.certificate_id == certificate_id)
    return [Alert(**row._mapping) for row in session.execute(query.order_by(A.created_at, A.id))]


def counts(session: Connection) -> dict[str, int]:
    """{"pending": n, "dead": n, "delivered": n}."""
    count = select(func.count(A.id))
    undelivered_rows = A.delivered_at.is_(None)
    return {
        "pending": session.scalar(count.where(undelivered_rows, A.dead.is_(False))) or 0,
        "dead": session.scalar(count.where(undelivered_rows, A.dead.is_(True))) or 0,
        "delivered": session.scalar(count.where(A.delivered_at.is_not(None))) or 0,
    }


def purge_delivered(session: Connection, older_than: datetime) -> int:
    """Delete delivered rows created before ``older_than``; returns how many."""
    result = session.execute(
        delete(outbox_table).where(A.delivered_at.is_not(None), A.created_at < older_than)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
