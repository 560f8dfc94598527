"""The store handle and its unit of work.

:class:`Store` holds what every read and write needs: the engine, the :class:`Sealer` that
encrypts keys and secrets at rest, and the clock. Callers open one unit of work with
``with store.session() as session:`` and pass that session (a SQLAlchemy Core
:class:`~sqlalchemy.engine.Connection` in a transaction) to the functions of the aggregate modules
(:mod:`.certificates`, :mod:`.revisions`, :mod:`.deployments`, :mod:`.leases`, :mod:`.secrets`,
:mod:`.events`, :mod:`.alerts`): the caller decides what commits together.

The store is written in SQLAlchemy Core, without the ORM: a short command (``certkeeper list``,
``certkeeper issue``) would otherwise spend about 0.12 s and 6 MB importing and configuring it,
for a dozen statements. The aggregate modules return frozen views and change rows with explicit
statements.

Database errors are translated here, once, into certkeeper errors with one readable line
(:func:`certkeeper.store.db.translate`): a locked SQLite file, a full disk, a read-only store, an
unreachable PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from certkeeper.clock import Clock
from certkeeper.errors import StoreConflict
from certkeeper.store.db import translate

if TYPE_CHECKING:
    from certkeeper.sealing import Sealer

T = TypeVar("T")


class Store:
    """An open certificate store: units of work, the sealer and the clock.

    ``sealer`` may be a function that loads it: it is called the first time a key or secret is
    sealed or opened, so commands that never touch one (``list``, ``status``) neither read the key
    file nor import the cryptography it needs.
    """

    def __init__(self, engine: Engine, sealer: Sealer | Callable[[], Sealer], clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._sealer: Sealer | None = None
        self._load_sealer: Callable[[], Sealer] | None = None
        if callable(sealer):
            self._load_sealer = sealer
        else:
            self._sealer = sealer
        self._sealer_lock = threading.Lock()

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            with self._sealer_lock:
                if self._sealer is None:
                    assert self._load_sealer is not None
                    self._sealer = self._load_sealer()
        return self._sealer

    @sealer.setter
    def sealer(self, sealer: Sealer) -> None:
        self._sealer = sealer

    @property
    def shared(self) -> bool:
        """Whether several processes on several hosts may use this store (not SQLite)."""
        return self.engine.dialect.name != "sqlite"

    @contextmanager
    def session(self) -> Iterator[Connection]:
        """A unit of work: committed on success, rolled back on any error.

        Raises:
            StoreConflict: a uniqueness constraint refused a write (another process was first).
            StoreError: the database cannot be used (locked, full, read-only, unreachable).
        """
        try:
            with self.engine.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def run(self, work: Callable[[Connection], T], *, attempts: int = 2) -> T:
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
