"""The store handle and its unit of work.

:class:`Store` holds what every read and write needs: the session factory, the :class:`Sealer`
that encrypts keys and secrets at rest, and the clock. Callers open one unit of work with
``with store.session() as session:`` and pass that session to the functions of the aggregate
modules (:mod:`.certificates`, :mod:`.revisions`, :mod:`.deployments`, :mod:`.leases`,
:mod:`.secrets`, :mod:`.events`, :mod:`.alerts`): the caller decides what commits together.

Database errors are translated here, once, into certkeeper errors with one readable line
(:func:`certkeeper.store.db.translate`): a locked SQLite file, a full disk, a read-only store, an
unreachable PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certkeeper.clock import Clock
from certkeeper.errors import StoreConflict
from certkeeper.sealing import Sealer
from certkeeper.store.db import translate

T = TypeVar("T")


class Store:
    """An open certificate store: sessions, the sealer and the clock."""

    def __init__(self, sessions: sessionmaker[Session], sealer: Sealer, clock: Clock) -> None:
        self.sessions = sessions
        self.sealer = sealer
        self.clock = clock

    @property
    def engine(self) -> Engine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    @property
    def shared(self) -> bool:
        """Whether several processes on several hosts may use this store (not SQLite)."""
        return self.engine.dialect.name != "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error.

        Raises:
            StoreConflict: a uniqueness constraint refused a write (another process was first).
            StoreError: the database cannot be used (locked, full, read-only, unreachable).
        """
        try:
            with self.sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def run(self, work: Callable[[Session], T], *, attempts: int = 2) -> T:
        """Run ``work`` in its own unit of work, again once if another process won a race to
        insert the same row (several CAS nodes syncing one config at once)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as session:
                    return work(session)
            except StoreConflict:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()
