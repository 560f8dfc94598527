"""Sealed values: named secrets (``secret:NAME`` references) and plugins' durable state.

Values are sealed with the :class:`~certkeeper.sealing.Sealer` passed in on the way in and opened
on the way out. Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, CursorResult, insert, select, update
from sqlalchemy import delete as sql_delete

from certkeeper.errors import NotFound
from certkeeper.store.tables import issuer_state as state_table
from certkeeper.store.tables import secrets as secret_table
from certkeeper.store.unit import Store

if TYPE_CHECKING:
    from certkeeper.sealing import Sealer

S = secret_table.c
P = state_table.c


def _count(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def put(session: Connection, sealer: Sealer, name: str, value: str, now: datetime) -> None:
    sealed = sealer.seal(value.encode())
    if not _count(session.execute(update(secret_table).where(S.name == name)
                                  .values(value_encrypted=sealed, updated_at=now))):
        session.execute(insert(secret_table).values(name=name, value_encrypted=sealed, updated_at=now))


def get(session: Connection, sealer: Sealer, name: str) -> str:
    sealed = session.scalar(select(S.value_encrypted).where(S.name == name))
    if sealed is None:
        raise NotFound(f"no stored secret named {name!r} (certkeeper secret set {name})")
    return sealer.open(sealed).decode()


def delete(session: Connection, name: str) -> bool:
    return bool(_count(session.execute(sql_delete(secret_table).where(S.name == name))))


def names(session: Connection) -> list[tuple[str, datetime]]:
    """(name, updated_at) of every stored secret; never the values."""
    return [(name, at) for name, at in session.execute(select(S.name, S.updated_at).order_by(S.name))]


def reseal(session: Connection, sealer: Sealer) -> int:
    """Re-encrypt every secret and every plugin state value under ``sealer``'s newest key."""
    states = session.execute(select(P.issuer, P.key, P.value_encrypted)).all()
    for issuer, key, sealed in states:
        session.execute(update(state_table).where(P.issuer == issuer, P.key == key)
                        .values(value_encrypted=sealer.reseal(sealed)))
    stored = session.execute(select(S.name, S.value_encrypted)).all()
    for name, sealed in stored:
        session.execute(update(secret_table).where(S.name == name).values(value_encrypted=sealer.reseal(sealed)))
    return len(states) + len(stored)


class PluginState:
    """A plugin's :class:`~certkeeper.plugins.StateStore` in the ``issuer_state`` table, sealed.

    Each call is its own unit of work: plugins keep no transaction open while they talk to a CA.
    """

    def __init__(self, store: Store, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    def _where(self, key: str) -> tuple[object, ...]:
        return (P.issuer == self._namespace, P.key == key)

    def get(self, key: str) -> bytes | None:
        with self._store.session() as session:
            sealed = session.scalar(select(P.value_encrypted).where(*self._where(key)))  # type: ignore[arg-type]
        return None if sealed is None else self._store.sealer.open(sealed)

    def put(self, key: str, value: bytes) -> None:
        sealed = self._store.sealer.seal(value)
        now = self._store.clock.now()
        with self._store.session() as session:
            updated = session.execute(update(state_table).where(*self._where(key))  # type: ignore[arg-type]
                                      .values(value_encrypted=sealed, updated_at=now))
            if not _count(updated):
                session.execute(insert(state_table).values(issuer=self._namespace, key=key, value_encrypted=sealed,
                                                           updated_at=now))

    def delete(self, key: str) -> None:
        with self._store.session() as session:
            session.execute(sql_delete(state_table).where(*self._where(key)))  # type: ignore[arg-type]

    def keys(self, prefix: str = "") -> list[str]:
        with self._store.session() as session:
            rows = session.scalars(
                select(P.key).where(P.issuer == self._namespace, P.key.startswith(prefix, autoescape=True))
            )
            return sorted(rows)
