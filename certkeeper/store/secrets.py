"""Sealed values: named secrets (``secret:NAME`` references) and plugins' durable state.

Values are sealed with the :class:`~certkeeper.sealing.Sealer` passed in on the way in and opened
on the way out. Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from certkeeper.errors import NotFound
from certkeeper.sealing import Sealer
from certkeeper.store.schema import IssuerStateRow, SecretRow
from certkeeper.store.unit import Store


def put(session: Session, sealer: Sealer, name: str, value: str, now: datetime) -> None:
    sealed = sealer.seal(value.encode())
    row = session.get(SecretRow, name)
    if row is None:
        session.add(SecretRow(name=name, value_encrypted=sealed, updated_at=now))
    else:
        row.value_encrypted, row.updated_at = sealed, now


def get(session: Session, sealer: Sealer, name: str) -> str:
    row = session.get(SecretRow, name)
    if row is None:
        raise NotFound(f"no stored secret named {name!r} (certkeeper secret set {name})")
    return sealer.open(row.value_encrypted).decode()


def delete(session: Session, name: str) -> bool:
    return bool(session.execute(sql_delete(SecretRow).where(SecretRow.name == name)).rowcount)  # type: ignore[attr-defined]


def names(session: Session) -> list[tuple[str, datetime]]:
    """(name, updated_at) of every stored secret; never the values."""
    return [(row.name, row.updated_at) for row in session.scalars(select(SecretRow).order_by(SecretRow.name))]


def reseal(session: Session, sealer: Sealer) -> int:
    """Re-encrypt every secret and every plugin state value under ``sealer``'s newest key."""
    count = 0
    for state in session.scalars(select(IssuerStateRow)):
        state.value_encrypted = sealer.reseal(state.value_encrypted)
        count += 1
    for secret in session.scalars(select(SecretRow)):
        secret.value_encrypted = sealer.reseal(secret.value_encrypted)
        count += 1
    return count


class PluginState:
    """A plugin's :class:`~certkeeper.plugins.StateStore` in the ``issuer_state`` table, sealed.

    Each call is its own unit of work: plugins keep no transaction open while they talk to a CA.
    """

    def __init__(self, store: Store, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    def get(self, key: str) -> bytes | None:
        with self._store.session() as session:
            row = session.get(IssuerStateRow, (self._namespace, key))
            return None if row is None else self._store.sealer.open(row.value_encrypted)

    def put(self, key: str, value: bytes) -> None:
        sealed = self._store.sealer.seal(value)
        now = self._store.clock.now()
        with self._store.session() as session:
            row = session.get(IssuerStateRow, (self._namespace, key))
            if row is None:
                session.add(IssuerStateRow(issuer=self._namespace, key=key, value_encrypted=sealed, updated_at=now))
            else:
                row.value_encrypted, row.updated_at = sealed, now

    def delete(self, key: str) -> None:
        with self._store.session() as session:
            session.execute(
                sql_delete(IssuerStateRow).where(IssuerStateRow.issuer == self._namespace, IssuerStateRow.key == key)
            )

    def keys(self, prefix: str = "") -> list[str]:
        with self._store.session() as session:
            rows = session.scalars(
                select(IssuerStateRow.key).where(
                    IssuerStateRow.issuer == self._namespace, IssuerStateRow.key.startswith(prefix, autoescape=True)
                )
            )
            return sorted(rows)
