"""Engines, sessions and migrations.

SQLite (the single-node default) runs in WAL mode with a busy timeout so the CLI and the daemon can
share it; PostgreSQL (``postgresql+psycopg://``) is used when several CAS nodes share one store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from certkeeper.errors import SchemaOutOfDate, StoreConflict, StoreError, StoreUnwritable

log = logging.getLogger(__name__)


SQLITE_BUSY_TIMEOUT_MS = 15_000
#: the newest migration; a test checks it equals Alembic's head, so commands can check the store
#: without importing Alembic (it costs ~0.15 s, more than the rest of `certkeeper list`)
HEAD_REVISION = "20261130_0001"


def _migrations_dir() -> Path:
    """Installed: the package certkeeper.migrations. From a checkout: migrations/ beside certkeeper/."""
    import importlib.util

    spec = importlib.util.find_spec("certkeeper.migrations")
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent
    return Path(__file__).resolve().parents[2] / "migrations"


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str, *, immutable: bool = False, busy_timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    ``immutable`` (SQLite only) opens the file read-only without the WAL's shared-memory file,
    for commands that only read when nothing can be written (a full disk, a read-only mount).
    When no process has the store open, its WAL was checkpointed into the file at the last close,
    so what is read is current; while the daemon runs, the WAL files exist and the normal open
    works anyway. See https://www.sqlite.org/uri.html#uriimmutable.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"store.url is not a database URL: {redact_url(url)}") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if immutable and database and database != ":memory:":
            parsed = parsed.set(database=f"file:{Path(database).resolve()}?mode=ro&immutable=1",
                                query={"uri": "true"})
            engine = create_engine(parsed)
            event.listen(engine, "connect", _sqlite_read_pragmas)
            return engine
        if database and database != ":memory:":
            from certkeeper.atomicfile import make_dirs

            make_dirs(Path(database).parent, 0o700)  # exactly 0700 whatever the umask
            _create_private(Path(database))
        # the driver's timeout is SQLite's busy timeout (how long a write waits for another's)
        kwargs["connect_args"] = {"timeout": busy_timeout}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["pool_recycle"] = 1800
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:
        raise StoreError(f"cannot open store {redact_url(url)}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_private(path: Path) -> None:
    """Create a new SQLite file as 0600 (an empty file is an empty database), so the store is
    readable by its owner only whatever the umask; SQLite gives its -wal and -shm files the
    database file's permissions (https://www.sqlite.org/src/file?name=src/os_unix.c,
    findCreateFileMode). An existing file is left as it is."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return  # it exists, or the folder cannot be written: opening the store says so in its words
    os.close(descriptor)
    os.chmod(path, 0o600)  # exactly, whatever the umask took away


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


@contextmanager
def _alembic(engine: Engine) -> Iterator[tuple[Any, Any]]:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        yield config, connection


#: PostgreSQL advisory lock key held while migrating, so CAS nodes starting together on an empty
#: store create the schema once (the others wait, then find it at head)
MIGRATION_LOCK_KEY = 0x6365_7274_6B65_6570  # "certkeep"


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        with _alembic(engine) as (config, connection):
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise StoreError(f"cannot migrate {redact_url(str(engine.url))}: {exc.orig}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with _alembic(engine) as (config, _connection):
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from sqlalchemy import text

    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            versions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
            return versions[0] if len(versions) == 1 else None
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Migrate a new (empty) store; refuse, or upgrade, a store behind head.

    The CLI upgrades automatically (``auto_upgrade``); the daemon refuses to start on a store that
    is not at head, so two versions never run against one schema by accident.
    """
    current = current_revision(engine)
    if current == HEAD_REVISION:
        return
    head = head_revision()
    if current == head:
        return
    if current is None and not inspect(engine).get_table_names():
        upgrade(engine)
        return
    if auto_upgrade:
        log.info("migrating store from %s to %s", current, head)
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"the store is at migration {current or 'none'}, this certkeeper needs {head}: "
        "run 'certkeeper db upgrade'"
    )


def quick_certificate_ids(url: str) -> list[str]:
    """Certificate ids with one SELECT and short timeouts: no migration, nothing created (shell
    completion). Raises whatever the database raises; the caller decides to stay silent."""
    from sqlalchemy import select

    from certkeeper.store.tables import certificates

    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args = {"timeout": 1}
    elif url.startswith("postgresql"):
        connect_args = {"connect_timeout": 2}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(certificates.c.id)))
    finally:
        engine.dispose()


def translate(exc: SQLAlchemyError) -> StoreError:
    """One readable line for a database error; the driver's own words only where they help."""
    if isinstance(exc, IntegrityError):
        return StoreConflict("the store refused a duplicate row (another process wrote it first)")
    original = exc.orig if isinstance(exc, DBAPIError) else None
    text = str(original or exc).strip().splitlines()[0] if str(original or exc).strip() else type(exc).__name__
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return StoreError(
            "the store is locked by another process for longer than the busy timeout "
            "([store] busy_timeout_seconds); try again when it has finished"
        )
    if "disk is full" in lowered or "no space left" in lowered or "could not extend file" in lowered:
        return StoreUnwritable("the store's disk is full: free some space, then try again")
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return StoreUnwritable("the store is read-only: certkeeper needs to write to its database file and folder")
    if "disk i/o error" in lowered:
        return StoreUnwritable(
            "the store's disk refused a read or write (disk I/O error): check that the data folder's disk "
            "has free space and is writable"
        )
    if "unable to open database" in lowered:
        return StoreUnwritable("cannot open the store's database file (check the data folder and its permissions)")
    if isinstance(exc, OperationalError) and ("connection" in lowered or "could not connect" in lowered
                                              or "server closed" in lowered or "terminating" in lowered):
        return StoreError(f"cannot reach the store's database server: {text[:200]}")
    return StoreError(f"store error: {type(original or exc).__name__}: {text[:200]}")


def why_unwritable(folder: Path) -> str | None:
    """What keeps certkeeper from writing in ``folder``, in words, or None if nothing obvious:
    a read-only mount, a full disk, or missing write permission."""
    import os
    import sys

    if sys.platform != "win32":
        try:
            stats = os.statvfs(folder)
        except OSError:
            return None
        if stats.f_flag & os.ST_RDONLY:
            return f"the store's folder {folder} is on a read-only file system: remount it read-write"
        free = stats.f_bavail * stats.f_frsize
        if free < 1024 * 1024:
            return f"the disk holding the store ({folder}) is full ({free // 1024} KB free): free some space"
    if not os.access(folder, os.W_OK):
        return f"certkeeper cannot write to the store's folder {folder}: check its permissions"
    return None
