"""Migrations upgrade to head, downgrade to base and up again, and match the models exactly,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from certkeeper.store import db
from certkeeper.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ck.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _diff(engine) -> list[object]:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_upgrade_downgrade_upgrade_and_no_drift(store_url: str) -> None:
    engine = db.make_engine(store_url)
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert _diff(engine) == []
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_ensure_current_refuses_an_old_store_without_auto_upgrade(tmp_path: Path) -> None:
    from certkeeper.errors import SchemaOutOfDate

    engine = db.make_engine(f"sqlite:///{tmp_path / 'ck.db'}")
    db.upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'old'")
    with pytest.raises(SchemaOutOfDate, match="certkeeper db upgrade"):
        db.ensure_current(engine, auto_upgrade=False)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'ck.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS


def test_head_constant_matches_alembic_head() -> None:
    # commands compare the store with HEAD_REVISION without importing Alembic; a new migration must update it
    assert db.HEAD_REVISION == db.head_revision()


def test_nodes_starting_together_on_an_empty_postgresql_create_the_schema_once(postgres_url: str) -> None:
    import threading

    engines = [db.make_engine(postgres_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine) -> None:  # type: ignore[no-untyped-def]
        try:
            db.ensure_current(engine, auto_upgrade=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,), daemon=True) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        # without the advisory lock the concurrent CREATE TABLEs deadlock or collide
        assert not any(thread.is_alive() for thread in threads), "schema creation is stuck"
        assert errors == []
        assert db.current_revision(engines[0]) == db.HEAD_REVISION
    finally:
        for engine in engines:
            engine.dispose()
