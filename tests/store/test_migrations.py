"""Migrations upgrade to head, downgrade to base and up again, and match the models exactly,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import stat
import sys
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


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes; Windows relies on the data folder's DACL")
def test_a_new_sqlite_store_and_its_wal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask would leave a database 0644
    try:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'data' / 'ck.db'}")
        db.upgrade(engine)
        with engine.connect() as connection:  # a reader keeps the -wal and -shm files in place
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "data").iterdir()}
            assert modes == {"ck.db": 0o600, "ck.db-wal": 0o600, "ck.db-shm": 0o600}
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_an_existing_sqlite_store_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "ck.db"
    path.touch(mode=0o640)
    path.chmod(0o640)  # an administrator's choice (a backup group, say) is not undone
    db.upgrade(db.make_engine(f"sqlite:///{path}"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


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
