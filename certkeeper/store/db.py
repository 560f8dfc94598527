"""Engines, sessions and migrations.

SQLite (the single-node default) runs in WAL mode with a busy timeout so the CLI and the daemon can
share it; PostgreSQL (``postgresql+psycopg://``) is used when several CAS nodes share one store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from certkeeper.errors import SchemaOutOfDate, StoreError

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


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"store.url is not a database URL: {redact_url(url)}") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            from certkeeper.atomicfile import make_dirs

            make_dirs(Path(database).parent, 0o700)  # exactly 0700 whatever the umask
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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
    except OperationalError as exc:
        raise StoreError(f"cannot read store {redact_url(str(engine.url))}: {exc.orig}") from exc


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
